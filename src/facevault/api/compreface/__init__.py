"""CompreFace's REST API next to facevault's own (docs/API.md, "CompreFace compatibility"): the routes
CompreFace 1.x documents and ``compreface-sdk`` and Double Take call, answered by facevault's use cases
under facevault's rules (consent before enrollment, an audit entry with the key's purpose for every
search, no demographic inference). Keys: ``facevault keys create --compat compreface ...``."""

from __future__ import annotations

from fastapi import APIRouter

from . import matching, recognition

router = APIRouter(include_in_schema=False)
router.include_router(matching.router)
router.include_router(recognition.router)

__all__ = ["router"]
