"""Face detection without identification: boxes, landmarks and quality of every face in a photo. Nothing
is stored; the call is audited (a ``detect`` entry with the photo's hash and the face count)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ...errors import InputError
from ...service import Vault
from ..deps import request_id, vault_for
from ..runner import run_sync
from ..schemas import body_doc, known_model, parse_body
from ..serialize import to_json
from ..uploads import decode_base64, read_upload, safe_name

router = APIRouter(prefix="/api/v1", tags=["search"])

# Enrollers check photos before they enroll them; searchers check probes before they search them.
DETECT_ROLES = ("enroller", "searcher")


class DetectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Annotated[str | None, Field(default=None, max_length=100)] = None
    purpose: Annotated[
        str | None, Field(default=None, max_length=500, description="Why (recorded; default detection).")
    ] = None


class DetectJSON(DetectParams):
    image_base64: str = Field(description="The photo, base64 (a data: URL is accepted too).")


@router.post(
    "/detect",
    summary="Where are the faces in this photo, and would enrollment take them? (no identity, audited)",
    openapi_extra=body_doc(DetectJSON, DetectParams, {"image": "one"}),
)
async def detect(request: Request, vault: Vault = vault_for(*DETECT_ROLES)) -> dict[str, Any]:
    body, files = await parse_body(request, DetectJSON, DetectParams, max_files=1)
    limit = request.app.state.api_settings.max_upload_bytes
    b64 = getattr(body, "image_base64", None)
    if b64 is not None:
        image = ("upload:image", decode_base64(b64, limit, "image_base64"))
    else:
        parts = files.get("image") or []
        if len(parts) != 1:
            raise InputError("send exactly one photo as the file part 'image'", code="no_image")
        image = (f"upload:{safe_name(parts[0].filename, 'image')}", await read_upload(parts[0], limit))
    result = await run_sync(request, vault.detect, image, model=known_model(body.model), purpose=body.purpose)
    return {**to_json(result), "request_id": request_id(request)}
