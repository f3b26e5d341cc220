"""The source of truth: SQLAlchemy Core over SQLite by default (any SQLAlchemy URL works)."""

from .database import Store, utcnow

__all__ = ["Store", "utcnow"]
