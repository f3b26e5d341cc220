"""Per-request views of the one process-wide Vault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from ..service import Vault
from .keys import Principal


def vault_as(request: Request, principal: Principal) -> Vault:
    """The vault acting as the calling key: the audit log records who asked, in which role, and the
    request id."""
    base: Vault = request.app.state.vault
    return base.acting_as(principal.actor, role=principal.role, request_id=request_id(request))


def request_id(request: Request) -> str:
    return str(request.state.request_id)


def traced(request: Request, principal: Principal, method: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A Vault method bound to this request's view (its audit entries carry the request id), and the
    extra keyword arguments to pass (none)."""
    return getattr(vault_as(request, principal), method), {}
