"""Per-request views of the one process-wide Vault."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import Request

from ..service import Vault
from .keys import Principal


def vault_as(request: Request, principal: Principal) -> Vault:
    """The vault acting as the calling key, so the audit log records who asked."""
    return request.app.state.vault.acting_as(principal.actor)


def request_id(request: Request) -> str:
    return str(request.state.request_id)


def traced(request: Request, principal: Principal, method: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A Vault method that records this request's id in its audit entry, and the extra keyword
    arguments to pass. Vault methods that take ``request_id`` get it directly; for those that do not
    (yet) the id rides in the audit entry's actor as ``key:<prefix> request:<id>``."""
    rid = request_id(request)
    base: Vault = request.app.state.vault
    if "request_id" in inspect.signature(getattr(Vault, method)).parameters:
        return getattr(base.acting_as(principal.actor), method), {"request_id": rid}
    return getattr(base.acting_as(f"{principal.actor} request:{rid}"), method), {}
