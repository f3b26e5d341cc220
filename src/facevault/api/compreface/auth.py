"""Who is calling the CompreFace surface: the ``x-api-key`` header names a compatibility key
(service/compat_keys.py), whose binding gives the collection, the service type, the roles and the
purpose every call is audited under. Failed authentications count against the client's address and
every key has its rate limit, as on facevault's own API."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import Request

from ...service import Vault
from ...service.compat_keys import CompatPrincipal
from ..errors import ApiError
from ..runner import run_sync
from .errors import FORBIDDEN, MISSING_HEADER, MODEL_NOT_FOUND, CompatError


@dataclass(frozen=True)
class Caller:
    key: CompatPrincipal
    vault: Vault  # acting as the key, in the role this call needs

    @property
    def collection(self) -> str:
        """The bound collection (recognition keys always have one)."""
        assert self.key.collection is not None
        return self.key.collection

    @property
    def purpose(self) -> str:
        return self.key.purpose

    @property
    def case_id(self) -> str | None:
        return self.key.case_id


async def caller(request: Request, service: str, role: str) -> Caller:
    """The calling compatibility key of ``service`` type, if it may act in ``role``; its vault acts as
    the key (actor ``key:<prefix>``) in that role (admin if the key is an admin key)."""
    key = (request.headers.get("x-api-key") or "").strip()
    if not key:
        raise CompatError(401, MISSING_HEADER, "Missing header: x-api-key", "unauthorized")
    state = request.app.state
    host = request.client.host if request.client else None
    charged = bool(getattr(request.state, "auth_charged", False))
    request.state.auth_charged = False
    base: Vault = state.vault
    found = await run_sync(request, base.authenticate_compat_key, key)
    if found is None:
        state.auth_failures.failed(host, key, charged=charged)
        raise ApiError(
            401,
            "unauthorized",
            "unknown or revoked key, or not a compatibility key (facevault keys create --compat)",
        )
    state.auth_failures.succeeded(host, key, charged=charged)
    wait = state.rate_limiter.take(found.prefix)
    if wait > 0:
        raise ApiError(
            429, "rate_limited", "too many requests for this key", {"Retry-After": str(math.ceil(wait))}
        )
    if found.service != service:
        raise CompatError(
            403, FORBIDDEN, f"this is a {found.service} key; this endpoint needs a {service} key", "forbidden"
        )
    if not found.may(role):
        raise CompatError(
            403,
            FORBIDDEN,
            f"this key's roles ({', '.join(found.roles)}) do not include {role}",
            "forbidden",
        )
    if found.collection_id is not None and found.collection is None:
        raise CompatError(
            404, MODEL_NOT_FOUND, "the collection this key is bound to was deleted", "collection_not_found"
        )
    acting = "admin" if "admin" in found.roles else role
    vault = base.acting_as(found.actor, role=acting, request_id=str(request.state.request_id))
    return Caller(key=found, vault=vault)
