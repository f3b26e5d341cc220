"""Query parameters and images as CompreFace's clients send them: query strings as the SDK builds them
(``?&limit=0``, booleans as ``True``), images as multipart file parts or base64 in a JSON body under
the same names (``file``; ``source_image`` and ``target_image`` for verification)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from ..uploads import decode_base64, read_upload, safe_name
from .errors import MISSING_PARAMETER, VALIDATION, CompatError

# Plugins facevault computes; age, gender, mask and pose never are (no demographic inference, and
# nothing about a face beyond what matching needs): asking for them is not an error, as in CompreFace
# for a plugin that is not enabled, and their fields are simply absent.
PLUGINS = ("landmarks", "calculator")
MAX_JSON_BYTES = 2 * 1024 * 1024


def _bad(name: str, value: str, want: str) -> CompatError:
    return CompatError(400, VALIDATION, f"{name} must be {want}, got {value!r}")


def int_param(request: Request, name: str, default: int, low: int = 0, high: int = 10**6) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, "an integer") from None
    if not low <= value <= high:
        raise _bad(name, raw, f"between {low} and {high}")
    return value


def bool_param(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise _bad(name, raw, "true or false")


def det_prob_threshold(request: Request) -> float | None:
    """Checked (0 to 1) and recorded in no answer: facevault's detectors keep their own operating point
    (docs/API.md)."""
    raw = request.query_params.get("det_prob_threshold")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad("det_prob_threshold", raw, "a number between 0.0 and 1.0") from None
    if not 0.0 <= value <= 1.0:
        raise _bad("det_prob_threshold", raw, "between 0.0 and 1.0")
    return value


def plugins(request: Request) -> set[str]:
    """The face plugins asked for that facevault computes."""
    raw = request.query_params.get("face_plugins") or ""
    return {p.strip().lower() for p in raw.split(",")} & set(PLUGINS)


def subject_param(request: Request, required: bool) -> str | None:
    value = request.query_params.get("subject")
    if value is None or not value.strip():
        if required:
            raise CompatError(400, MISSING_PARAMETER, "subject must not be empty", "invalid_request")
        return None
    return value.strip()


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES * 40:
        raise CompatError(413, VALIDATION, "request body too large", "payload_too_large")
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise CompatError(400, VALIDATION, "the body is not valid JSON") from None


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def images(request: Request, *names: str) -> list[tuple[str, bytes]]:
    """One image per name, as (display name, bytes), from multipart parts or base64 JSON fields."""
    limit = request.app.state.api_settings.max_upload_bytes
    out: list[tuple[str, bytes]] = []
    if is_json(request):
        data = await json_body(request)
        for name in names:
            value = data.get(name) if isinstance(data, dict) else None
            if not isinstance(value, str) or not value:
                raise CompatError(
                    400, MISSING_PARAMETER, f"send the image as base64 in the JSON field {name!r}"
                )
            out.append((f"upload:{name}", decode_base64(value, limit, name)))
        return out
    form = await request.form(max_files=len(names) + 1, max_fields=20)
    for name in names:
        part = form.get(name)
        if not isinstance(part, UploadFile):
            raise CompatError(400, MISSING_PARAMETER, f"send the image as the multipart file part {name!r}")
        out.append((safe_name(part.filename, name), await read_upload(part, limit)))
    return out
