"""Every error leaves the server as ``{"error": {"code", "message", "request_id"}}`` with a fitting
status. Stack traces never reach a reply or a log line: unexpected exceptions are logged by type and
request id only."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigError,
    ConflictError,
    ConsentError,
    FaceVaultError,
    ImageTooLargeError,
    InputError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    PurposeRequiredError,
)

log = logging.getLogger("facevault.api")


class ApiError(Exception):
    """An error the HTTP layer raises itself (auth, limits, timeouts)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# Checked in order: the first matching class decides the status.
_STATUS: tuple[tuple[type[FaceVaultError], int], ...] = (
    (ImageTooLargeError, 413),
    (NotFoundError, 404),
    (ModelMismatchError, 409),
    (ConflictError, 409),
    (PurposeRequiredError, 400),
    (InputError, 422),  # includes unreadable images and "no face"
    (ConfigError, 400),  # e.g. a threshold outside [-1, 1]
    (ModelError, 503),
)
_FORBIDDEN_CONSENT = {"consent_withdrawn", "consent_expired"}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _multiple_faces(message: str | None) -> str:
    found = re.match(r"\s*(\d+) faces", message or "")
    head = f"{found.group(1)} faces found" if found else "several faces found"
    return f"{head}; enroll a photo of one person or send the form field largest=true"


def _reviewer_required(message: str | None) -> str:
    return "a review records the calling key's name as the reviewer, and this key has none: use a named key"


# Service messages that speak of the service's own parameters (``largest=True``, ``reviewer``), said in
# the words of the HTTP API instead, by error or outcome code.
_API_MESSAGES = {"multiple_faces": _multiple_faces, "reviewer_required": _reviewer_required}


def api_message(code: str | None, message: str | None) -> str | None:
    """The message to show an HTTP client for a service error or outcome with this code."""
    fix = _API_MESSAGES.get(code or "")
    return fix(message) if fix else message


# The audit log's integrity errors: the vault's state refuses the request (409), not a server fault.
AUDIT_CONFLICTS = {"audit_chain_broken", "audit_log_missing", "audit_entry_malformed", "no_chain_break"}


def status_for(exc: FaceVaultError) -> int:
    if isinstance(exc, ConsentError):
        return 403 if exc.code in _FORBIDDEN_CONSENT else 400
    if exc.code in AUDIT_CONFLICTS:
        return 409
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    if exc.code == "index_unavailable":  # the vector index server is down or restarting: try again
        return 503
    return 500  # IntegrityError and anything unexpected from the engine


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_body(code: str, message: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


def _reply(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, request_id_of(request), **extra), status_code=status, headers=headers
    )


def _validation_message(errors: list[Any]) -> tuple[str, list[dict[str, str]]]:
    details = []
    for e in errors[:20]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        details.append({"field": loc, "problem": str(e.get("msg", "invalid"))})
    text = "; ".join(f"{d['field']}: {d['problem']}" if d["field"] else d["problem"] for d in details)
    return text or "invalid request", details


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(FaceVaultError)
    async def _facevault(request: Request, exc: FaceVaultError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request %s failed: %s", request_id_of(request), exc.code)
        return _reply(request, status, exc.code, api_message(exc.code, exc.message) or exc.message)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return _reply(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(list(exc.errors()))
        return _reply(request, 422, "invalid_request", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return _reply(request, exc.status_code, code, message, getattr(exc, "headers", None))
