"""The HTTP API (FastAPI): parse -> Vault -> serialize, nothing else. See docs/API.md."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
