"""Privacy operations over HTTP: a subject's consent record and its withdrawal (which erases at once),
opt-out by selfie, the public retention policy, retention settings and sweeps, the GDPR Art. 30 record
of processing, and template key rotation. Each is one Vault call acting as the calling key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ...errors import InputError
from ...service import Vault
from ..deps import base_vault, request_id, vault_for
from ..runner import run_sync
from ..schemas import OptoutJSON, OptoutParams, RetentionSet, body_doc, parse_body
from ..serialize import to_json
from ..uploads import decode_base64, read_upload, safe_name

router = APIRouter(prefix="/api/v1", tags=["privacy"])
SUBJECT = "/collections/{collection}/subjects/{subject}"


# ---- consent -------------------------------------------------------------------------------------
# {subject} is a subject reference (see routers/subjects.py); the by-external-id routes take an external
# id as it is. Declared first, so that they win over {subject}.
BY_EXTERNAL_ID = "/collections/{collection}/subjects/by-external-id/{external_id}"


@router.get(f"{BY_EXTERNAL_ID}/consent", summary="The consent record of the subject with this external id")
async def consent_show_by_external_id(
    request: Request, collection: str, external_id: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.consent_show, collection, f"ext:{external_id}"))


@router.post(
    f"{BY_EXTERNAL_ID}/consent/withdraw",
    summary="Withdraw the consent of the subject with this external id (and nobody else): erased at once",
)
async def consent_withdraw_by_external_id(
    request: Request, collection: str, external_id: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    result = to_json(await run_sync(request, vault.withdraw_consent, collection, f"ext:{external_id}"))
    return {**result, "samples_removed": result["samples_erased"], "request_id": request_id(request)}


@router.get(f"{SUBJECT}/consent", summary="A subject's consent record")
async def consent_show(
    request: Request, collection: str, subject: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.consent_show, collection, subject))


@router.post(
    f"{SUBJECT}/consent/withdraw",
    summary="Withdraw a subject's consent: their biometric data is erased at once (receipt in the audit log)",
)
async def consent_withdraw(
    request: Request, collection: str, subject: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    result = to_json(await run_sync(request, vault.withdraw_consent, collection, subject))
    return {**result, "samples_removed": result["samples_erased"], "request_id": request_id(request)}


# ---- opt-out by selfie ---------------------------------------------------------------------------
@router.post(
    "/optout",
    summary="Opt-out by selfie: erase everyone matching the face at the strict threshold and block "
    "re-enrollment (audited)",
    openapi_extra=body_doc(OptoutJSON, OptoutParams, {"image": "one"}),
)
async def optout(request: Request, vault: Vault = vault_for("enroller")) -> dict[str, Any]:
    body, files = await parse_body(request, OptoutJSON, OptoutParams, max_files=1)
    limit = request.app.state.api_settings.max_upload_bytes
    b64 = getattr(body, "image_base64", None)
    if b64 is not None:
        photo = ("upload:image", decode_base64(b64, limit, "image_base64"))
    else:
        parts = files.get("image") or []
        if len(parts) != 1:
            raise InputError("send exactly one photo as the file part 'image'", code="no_image")
        photo = (f"upload:{safe_name(parts[0].filename, 'image')}", await read_upload(parts[0], limit))
    result = await run_sync(request, vault.optout, photo, collection=body.collection)
    return {**to_json(result), "request_id": request_id(request)}


# ---- retention -----------------------------------------------------------------------------------
@router.get(
    "/retention/policy",
    summary="The written retention and destruction policy (public: BIPA 740 ILCS 14/15(a))",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def retention_policy(request: Request) -> PlainTextResponse:
    text = await run_sync(request, base_vault(request).retention_policy)
    return PlainTextResponse(text + "\n")


@router.post("/retention/sweep", summary="Destroy everything due now; returns the erasure receipts")
async def retention_sweep(request: Request, vault: Vault = vault_for("admin")) -> dict[str, Any]:
    result = await run_sync(request, vault.retention_sweep)
    return {**to_json(result), "request_id": request_id(request)}


@router.put("/collections/{collection}/retention", summary="Set a collection's retention period")
async def set_retention(
    request: Request, collection: str, body: RetentionSet, vault: Vault = vault_for("admin")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.set_retention, collection, body.days))


# ---- records and keys ----------------------------------------------------------------------------
@router.get("/reports/processing", summary="The GDPR Art. 30 record of processing activities")
async def processing_record(request: Request, vault: Vault = vault_for("auditor")) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.processing_record))


@router.post(
    "/template-keys/rotate",
    summary="Re-protect every template under a new template key (old stolen templates stop matching)",
)
async def rotate_template_keys(request: Request, vault: Vault = vault_for("admin")) -> dict[str, Any]:
    result = await run_sync(request, vault.rotate_keys)
    return {**to_json(result), "request_id": request_id(request)}
