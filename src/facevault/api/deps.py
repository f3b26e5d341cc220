"""Per-request dependencies: the one process-wide Vault, and the view of it that acts as the calling key
(its audit entries record who asked, in which role, and the request id).

    async def route(request: Request, vault: Vault = vault_for("auditor")) -> ...

``vault_for`` admits the same roles as ``require`` and shares its check: a route that also needs the
caller (``principal: Principal = Depends(require("auditor"))``) authenticates once per request."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request

from ..results import Principal
from ..service import Vault
from .auth import Require, require


def base_vault(request: Request) -> Vault:
    """The process-wide Vault (acting as the server itself: public routes and probes)."""
    vault: Vault = request.app.state.vault
    return vault


def request_id(request: Request) -> str:
    return str(request.state.request_id)


def vault_for(*roles: str) -> Any:
    """A dependency (``Depends``) giving the Vault acting as the calling key, whose role must be one of
    ``roles`` (admin always is)."""
    return Depends(acting_vault(require(*roles)))


@functools.cache
def acting_vault(need: Require) -> Callable[..., Awaitable[Vault]]:
    """The dependency function behind :func:`vault_for`, one per role check (FastAPI runs a dependency
    once per request when the same callable is used twice)."""

    async def vault_as_caller(request: Request, principal: Principal = Depends(need)) -> Vault:
        return base_vault(request).acting_as(
            principal.actor, role=principal.role, request_id=request_id(request)
        )

    return vault_as_caller
