"""Errors on the CompreFace surface leave as CompreFace's ``{"message", "code"}`` (with facevault's own
error code and the request id next to them), never as facevault's ``{"error": {...}}``: clients such as
Double Take read ``code`` (28, "no face", is an empty result to them).

Codes are CompreFace's where it has one (28 no face, 42 subject not found, ...); facevault's own
refusals, which CompreFace never makes, have codes from 100 up (docs/API.md lists them)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ...errors import (
    ConflictError,
    ConsentError,
    FaceVaultError,
    ImageTooLargeError,
    InputError,
    ModelError,
    ModelMismatchError,
    NoFaceError,
    NotFoundError,
    PurposeRequiredError,
)
from ..errors import ApiError, api_message

log = logging.getLogger("facevault.api")

NO_FACE = 28
NO_FACE_MESSAGE = "No face is found in the given image"
# CompreFace's codes (its CommonExceptionCode) used here.
UNDEFINED, MODEL_NOT_FOUND, IMAGE_NOT_FOUND, MISSING_HEADER = 0, 10, 11, 20
VALIDATION, MISSING_PARAMETER, INCORRECT_ARGUMENT, TOO_MANY_FACES = 26, 33, 36, 31
SUBJECT_NOT_FOUND, SUBJECT_EXISTS, EMBEDDING_NOT_FOUND, FACES_SERVICE = 42, 43, 44, 41
# facevault's own refusals.
CONSENT_REQUIRED, FORBIDDEN, UNAUTHORIZED, RATE_LIMITED, BUSY, CONFLICT = 100, 101, 102, 103, 104, 105

_BY_CODE: dict[str, tuple[int, int]] = {  # facevault error code -> (HTTP status, CompreFace code)
    "no_face": (400, NO_FACE),
    "multiple_faces": (400, TOO_MANY_FACES),
    "subject_not_found": (404, SUBJECT_NOT_FOUND),
    "sample_not_found": (404, IMAGE_NOT_FOUND),
    "collection_not_found": (404, MODEL_NOT_FOUND),
    "subject_exists": (400, SUBJECT_EXISTS),
    "consent_required": (403, CONSENT_REQUIRED),
    "thumbnail_unavailable": (404, IMAGE_NOT_FOUND),
}
_BY_CLASS: tuple[tuple[type[FaceVaultError], int, int], ...] = (
    (ConsentError, 403, CONSENT_REQUIRED),
    (ImageTooLargeError, 413, VALIDATION),
    (NotFoundError, 404, UNDEFINED),
    (ModelMismatchError, 400, INCORRECT_ARGUMENT),
    (ConflictError, 409, CONFLICT),
    (PurposeRequiredError, 400, MISSING_PARAMETER),
    (InputError, 400, VALIDATION),
    (ModelError, 503, FACES_SERVICE),
)
_BY_STATUS = {401: UNAUTHORIZED, 403: FORBIDDEN, 429: RATE_LIMITED, 503: BUSY, 504: BUSY}


class CompatError(Exception):
    """A refusal of the compatibility layer itself (a parameter, the key's binding)."""

    def __init__(self, status: int, code: int, message: str, fv_code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fv_code = status, code, message, fv_code


def body(request: Request, code: int, message: str, fv_code: str) -> dict[str, Any]:
    return {
        "message": message,
        "code": code,
        "facevault_code": fv_code,
        "request_id": getattr(request.state, "request_id", None),
    }


def reply(request: Request, exc: Exception) -> JSONResponse:
    """The CompreFace-shaped answer to ``exc``."""
    headers = None
    if isinstance(exc, CompatError):
        status, code, message, fv = exc.status, exc.code, exc.message, exc.fv_code
    elif isinstance(exc, NoFaceError):
        status, code, message, fv = 400, NO_FACE, NO_FACE_MESSAGE, exc.code
    elif isinstance(exc, FaceVaultError):
        status, code = _BY_CODE.get(exc.code) or next(
            ((s, c) for cls, s, c in _BY_CLASS if isinstance(exc, cls)), (500, UNDEFINED)
        )
        message, fv = api_message(exc.code, exc.message) or exc.message, exc.code
        if status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", None), exc.code)
    elif isinstance(exc, ApiError):
        status, code, message, fv, headers = (
            exc.status,
            _BY_STATUS.get(exc.status, UNDEFINED),
            exc.message,
            exc.code,
            exc.headers,
        )
    elif isinstance(exc, RequestValidationError):
        problems = "; ".join(str(e.get("msg", "invalid")) for e in list(exc.errors())[:5])
        status, code, message, fv = 400, VALIDATION, problems or "invalid request", "invalid_request"
    else:
        assert isinstance(exc, HTTPException)
        status, code, fv = exc.status_code, _BY_STATUS.get(exc.status_code, UNDEFINED), "http_error"
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return JSONResponse(body(request, code, message, fv), status_code=status, headers=headers)


HANDLED = (CompatError, FaceVaultError, ApiError, RequestValidationError, HTTPException)


class CompatRoute(APIRoute):
    """A route whose every refusal (its parameters' validation included) is answered in CompreFace's
    error shape; anything unexpected still goes to the app's own handling (a 500 without details)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def compat_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HANDLED as exc:
                return reply(request, exc)

        return compat_handler
