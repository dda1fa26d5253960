"""The application's async engine and declarative base."""

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.config import settings

engine = create_async_engine(settings.database_url)


class Base(DeclarativeBase):
    """Declarative base: its metadata is env.py's target_metadata."""
