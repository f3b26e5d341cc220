"""The FastAPI application: one process, one Vault, the JSON API under /api/v1 and the web UI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute

from .. import __version__
from ..config import ApiSettings, load_api_settings
from ..service import Vault, open_vault
from . import compreface
from .auth import Require
from .errors import install_handlers
from .middleware import RequestContextMiddleware, mask_access_log
from .ratelimit import AuthFailureLimiter, RateLimiter
from .retention import RetentionSweeper
from .routers import audit, collections, detect, keys, privacy, review, search, subjects, system
from .runner import WorkPool

log = logging.getLogger("facevault.api")

DESCRIPTION = """\
The facevault JSON API. Every call needs an API key (`Authorization: Bearer fvk_...` or
`X-API-Key: fvk_...`) whose role is listed in the operation's `x-roles` (admin may do everything).
Errors are `{"error": {"code", "message", "request_id"}}`. Every search and verification is recorded
in the audit log with the key, the purpose and the request id.
"""


def route_roles(route: APIRoute) -> tuple[str, ...] | None:
    """The roles an API route admits (None for public routes), read from its ``Require`` dependency."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Require):
            return dep.call.roles
        stack.extend(dep.dependencies)
    return None


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, including those of included routers (newer FastAPI keeps an included router
    as one node, ``original_router``, instead of copying its routes into the app)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from api_routes(nested.routes)


def _document_roles(app: FastAPI) -> None:
    for route in api_routes(app.routes):
        roles = route_roles(route)
        if roles is not None:
            route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": list(roles)}
            route.description = (route.description or "") + f"\n\nRoles: {', '.join(roles)}."


def create_app(
    vault: Vault | None = None,
    *,
    home: str | None = None,
    settings: ApiSettings | None = None,
    create: bool = True,
    sweep_clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """Build the app around ``vault`` (or the vault at ``home``, created if missing).

    On start (the ASGI lifespan) the app runs a retention sweep before serving, then one every
    ``settings.retention_sweep_interval_s``; ``sweep_clock`` replaces "now" for those sweeps (tests)."""
    api_settings = settings or load_api_settings()
    own_vault = vault is None
    the_vault = vault if vault is not None else open_vault(home, create=create)
    sweeper = RetentionSweeper(the_vault, api_settings.retention_sweep_interval_s, sweep_clock)
    pool = WorkPool(
        api_settings.work_threads, api_settings.work_queue, retry_after_s=api_settings.overload_retry_after_s
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await sweeper.start()
            yield
        finally:
            await sweeper.stop()
            if not await anyio.to_thread.run_sync(pool.close):
                log.warning("stopping with vault work still running after 30 s")
            if own_vault:
                the_vault.close()

    app = FastAPI(
        title="facevault",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.vault = the_vault
    app.state.api_settings = api_settings
    app.state.rate_limiter = RateLimiter(api_settings.rate_per_minute, api_settings.rate_burst)
    app.state.auth_failures = AuthFailureLimiter(
        api_settings.auth_fail_per_minute, api_settings.auth_fail_burst
    )
    app.state.work_pool = pool
    app.state.retention = sweeper
    install_handlers(app)
    for module in (system, collections, subjects, search, detect, review, privacy, audit, keys):
        app.include_router(module.router)
    app.include_router(compreface.router)  # CompreFace's protocol for its existing clients (docs/API.md)
    app.include_router(__import__("facevault.api.routers.library", fromlist=["router"]).router)
    _document_roles(app)

    from ..web import mount_web

    mount_web(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=api_settings.max_request_bytes,
        auth_failures=app.state.auth_failures,
        fail_delay_s=api_settings.auth_fail_delay_s,
        work_pool=pool,
    )
    mask_access_log()  # the server's access log shows route templates, never names or external ids
    return app


def app_factory() -> Any:
    """For ``uvicorn --factory facevault.api.app:app_factory`` (vault from FACEVAULT_HOME)."""
    return create_app()
