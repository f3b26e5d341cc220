"""Authentication (API key in ``Authorization: Bearer`` or ``X-API-Key``), role checks, the per-key
rate limit and the count of failed authentications per client address (``ratelimit``). Every endpoint
under /api/v1 declares its roles with ``Depends(require(...))`` or ``deps.vault_for(...)``; the role
matrix test and the OpenAPI document (``x-roles``) read them back from the routes."""

from __future__ import annotations

import math

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..config import ROLES
from ..results import Principal
from .errors import ApiError
from .runner import run_sync

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fvk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: fvk_...`")


class Require:
    """A dependency that admits a valid key whose role is one of ``roles`` (admin is always one)."""

    def __init__(self, *roles: str) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        self.roles: tuple[str, ...] = tuple(r for r in ROLES if r in {"admin", *roles})

    async def __call__(
        self,
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
        header_key: str | None = Depends(_header),
    ) -> Principal:
        key = header_key or (bearer.credentials if bearer else None)
        if not key:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required",
                {"WWW-Authenticate": 'Bearer realm="facevault"'},
            )
        state = request.app.state
        # The middleware has refused (429) a key from an address with too many failures, and charged
        # this one a token of its address's bucket (``charged``) unless it is known to be good.
        host = request.client.host if request.client else None
        charged = bool(getattr(request.state, "auth_charged", False))
        request.state.auth_charged = False  # settled below, once
        principal = await run_sync(request, state.vault.authenticate_key, key.strip())
        if principal is None:
            state.auth_failures.failed(host, key, charged=charged)
            raise ApiError(401, "unauthorized", "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        state.auth_failures.succeeded(host, key, charged=charged)
        request.state.principal = principal
        wait = state.rate_limiter.take(principal.prefix)
        if wait > 0:
            raise ApiError(
                429, "rate_limited", "too many requests for this key", {"Retry-After": str(math.ceil(wait))}
            )
        if principal.role not in self.roles:
            raise ApiError(
                403, "forbidden", f"role {principal.role!r} may not do this (needs {', '.join(self.roles)})"
            )
        return principal


_CHECKS: dict[tuple[str, ...], Require] = {}


def require(*roles: str) -> Require:
    """The one ``Require`` for these roles: FastAPI runs a dependency once per request only when it is
    the same object, so a route and its acting vault (``deps.vault_for``) share one check (and one
    rate-limit token)."""
    check = Require(*roles)
    return _CHECKS.setdefault(check.roles, check)


ANY_ROLE = ROLES
