"""Request-level plumbing as plain ASGI middleware: a request id on every request and reply, safe
response headers, a cap on the request body that holds even when no Content-Length is sent, and, before
any body is read or any route or store is touched: the 503 of a server whose work pool is full and the
429 of an address with too many failed authentications. Also the path the access log may show: the
route's template, never the raw path (which names people: erased external ids, subject names)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import HTTP_CODES, error_body
from .ratelimit import AuthFailureLimiter, presented_key
from .runner import Ticket, WorkPool

log = logging.getLogger("facevault.api")

# The path of the request being answered, as the access log may print it (set just before the
# response starts, in the task that then calls the server's ``send``, which writes the access line).
_LOGGED_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("facevault_logged_path")
UNROUTED = "{unmatched}"
# Paths under these prefixes name no one (the UI's static files): logged as the prefix and {file}.
_PUBLIC_PREFIXES = ("/static/",)


def logged_path(scope: Scope) -> str:
    """The route template of the request (``/api/v1/collections/{collection}/subjects/{subject}``),
    ``/static/{file}``, or ``{unmatched}``; the query string is never included."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template:
        return template
    path = str(scope.get("path", ""))
    for prefix in _PUBLIC_PREFIXES:
        if path.startswith(prefix):
            return prefix + "{file}"
    return UNROUTED


class MaskedAccessLog(logging.Filter):
    """Rewrites uvicorn's access line (``client - "METHOD PATH HTTP/x" status``) to show the logged
    path instead of the raw path and query. A line whose request set no logged path shows
    ``{unmatched}``: the filter never lets a raw path through."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            record.args = (*args[:2], _LOGGED_PATH.get(UNROUTED), *args[3:])
        return True


def mask_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`MaskedAccessLog` on the server's access logger (once per process)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, MaskedAccessLog) for f in logger.filters):
        logger.addFilter(MaskedAccessLog())


_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
# The UI's pages and scripts come from this server only; images may be blob: URLs made in the page.
UI_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex[:20]}"


class RequestContextMiddleware:
    """Outermost layer. Also turns any exception that escaped the handlers into a JSON reply and one
    log line, so neither the client nor the server log ever sees a traceback (Starlette's own error
    middleware re-raises, which makes the server print one)."""

    # At most this many refused requests are held back at once (each costs only a sleeping task).
    MAX_HELD = 1024

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        auth_failures: AuthFailureLimiter | None = None,
        fail_delay_s: float = 0.0,
        work_pool: WorkPool | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.auth_failures = auth_failures
        self.work_pool = work_pool
        self.fail_delay_s = fail_delay_s
        self._held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.match(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        is_ui = not (
            path.startswith(("/api/", "/docs", "/redoc", "/openapi")) or path in ("/healthz", "/readyz")
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _LOGGED_PATH.set(logged_path(scope))
                extra = [(b"x-request-id", rid.encode()), *_SECURITY_HEADERS]
                if is_ui:
                    extra.append((b"content-security-policy", UI_CSP.encode()))
                if path.startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        too_large = f"request body is larger than {self.max_body_bytes} bytes"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_error(tracking_send, 413, "payload_too_large", too_large, rid)
            return
        if path.startswith("/api/"):
            client = scope.get("client")
            host = client[0] if client else None
            charged = False
            if self.auth_failures is not None:
                wait, charged = self.auth_failures.admit(host, presented_key(headers.items()))
                if wait > 0:
                    await self._refuse(tracking_send, wait, rid)
                    return
                scope["state"]["auth_charged"] = charged
            if self.work_pool is not None and self.work_pool.full():
                # Every route under /api/ needs the pool (authentication first): a full pool is told
                # before the body is read and the request routed, so an overloaded server answers at
                # once. (The request's place is taken by its first job, ``runner.run_sync``, so a
                # slow upload holds none.)
                if charged and self.auth_failures is not None:
                    self.auth_failures.refund(host)  # its key was never tried
                busy = self.work_pool.busy_error()
                extra = [(k.lower().encode(), v.encode()) for k, v in (busy.headers or {}).items()]
                await _send_error(tracking_send, 503, busy.code, busy.message, rid, extra)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, too_large)
            return message

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:
            if not started:
                code = HTTP_CODES.get(exc.status_code, "http_error")
                await _send_error(tracking_send, exc.status_code, code, str(exc.detail), rid)
        except Exception as exc:
            log.error("request %s failed with %s", rid, type(exc).__name__)
            if not started:
                await _send_error(tracking_send, 500, "internal_error", "internal server error", rid)
        finally:
            ticket: Ticket | None = scope["state"].get("work_ticket")
            if ticket is not None:  # the request is answered; its place goes when its work has ended
                ticket.close()

    async def _refuse(self, send: Send, wait: float, rid: str) -> None:
        """429 for an address with too many failed authentications. The answer is held back a little
        (``fail_delay_s``, at most the wait): a client that ignores ``Retry-After`` and asks again at
        once then gets one answer per delay per connection, instead of keeping the server busy."""
        delay = min(wait, self.fail_delay_s)
        if delay > 0 and self._held < self.MAX_HELD:
            self._held += 1
            try:
                await asyncio.sleep(delay)
            finally:
                self._held -= 1
            wait = max(wait - delay, 0.0)
        message = "too many failed authentications from this address; retry later"
        headers = [(b"retry-after", str(max(1, math.ceil(wait))).encode())]
        await _send_error(send, 429, "rate_limited", message, rid, headers)


async def _send_error(
    send: Send, status: int, code: str, message: str, rid: str, headers: list[Any] | None = None
) -> None:
    body = json.dumps(error_body(code, message, rid)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
