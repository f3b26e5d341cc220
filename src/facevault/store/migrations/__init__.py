"""Alembic migrations of the store (run by ``Store.create_schema``; see docs/SCALE.md)."""
