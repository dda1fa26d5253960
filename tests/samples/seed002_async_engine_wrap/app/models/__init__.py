"""The application's models."""

from app.models.item import Item

__all__ = ["Item"]
