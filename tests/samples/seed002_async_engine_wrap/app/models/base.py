from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base: its metadata is env.py's target_metadata."""
