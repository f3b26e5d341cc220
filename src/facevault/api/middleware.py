"""Request-level plumbing as plain ASGI middleware: a request id on every request and reply, safe
response headers, and a cap on the request body that holds even when no Content-Length is sent."""

from __future__ import annotations

import json
import logging
import re
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import HTTP_CODES, error_body

log = logging.getLogger("facevault.api")

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

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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


async def _send_error(send: Send, status: int, code: str, message: str, rid: str) -> None:
    body = json.dumps(error_body(code, message, rid)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
