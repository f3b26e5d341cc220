"""1:N search and 1:1 verification. Replies carry the CLI's ``--json`` fields plus ``request_id``,
which is also recorded in the audit entry of the call."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import FaceVaultError, InputError
from ...results import SearchResult
from ...service import Vault, annotate
from ..deps import request_id, vault_for
from ..runner import run_sync
from ..schemas import (
    Files,
    SearchJSON,
    SearchParams,
    VerifyJSON,
    VerifyParams,
    body_doc,
    known_model,
    parse_body,
)
from ..serialize import to_json
from ..uploads import decode_base64, read_upload, safe_name

router = APIRouter(prefix="/api/v1", tags=["search"])
log = logging.getLogger(__name__)


async def _image(request: Request, files: Files, field: str, b64: str | None) -> tuple[str, bytes]:
    limit = request.app.state.api_settings.max_upload_bytes
    if b64 is not None:
        return f"upload:{field}", decode_base64(b64, limit, f"{field}_base64")
    parts = files.get(field) or []
    if len(parts) != 1:
        raise InputError(f"send exactly one photo as the file part {field!r}", code="no_image")
    return f"upload:{safe_name(parts[0].filename, field)}", await read_upload(parts[0], limit)


def _search_and_keep(vault: Vault, collection: str, probe: tuple[str, bytes], body: Any) -> SearchResult:
    """The search; with a case id, its probe is kept (sealed) for the case's reviewers until they decide
    (``service.review_probes``)."""
    result = vault.search(
        collection,
        probe,
        purpose=body.purpose,
        case_id=body.case_id,
        top_k=body.top,
        fmr=body.fmr,
        threshold=body.threshold,
    )
    if result.case_id:
        try:
            vault.keep_review_probe(result, probe)
        except (OSError, FaceVaultError) as exc:  # the search stands; its reviewers see "not kept"
            log.warning("the probe of search #%s was not kept for review: %s", result.audit_seq, exc)
    return result


async def _run_search(request: Request, collection: str, vault: Vault) -> tuple[SearchResult, Any]:
    body, files = await parse_body(request, SearchJSON, SearchParams, max_files=1)
    probe = await _image(request, files, "image", getattr(body, "image_base64", None))
    result = await run_sync(request, _search_and_keep, vault, collection, probe, body)
    return result, probe


@router.post(
    "/collections/{collection}/search",
    summary="1:N: who in this collection is in the photo? (purpose required, audited)",
    openapi_extra=body_doc(SearchJSON, SearchParams, {"image": "one"}),
)
async def search(request: Request, collection: str, vault: Vault = vault_for("searcher")) -> dict[str, Any]:
    result, _ = await _run_search(request, collection, vault)
    return {**to_json(result), "summary": annotate.summary(result), "request_id": request_id(request)}


@router.post(
    "/collections/{collection}/search/annotated",
    summary="The same search, answered with the photo: every face boxed (green: a match, amber: no "
    "match) and labelled with the best match and similarity; the one-line summary in X-Search-Summary",
    openapi_extra=body_doc(SearchJSON, SearchParams, {"image": "one"}),
    responses={200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def search_annotated(
    request: Request, collection: str, vault: Vault = vault_for("searcher")
) -> Response:
    result, probe = await _run_search(request, collection, vault)
    data = await run_sync(request, vault.annotate_search, probe, result)
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": 'attachment; filename="search-annotated.jpg"',
        "X-Search-Summary": quote(annotate.summary(result), safe=" :;,.()#-"),
        "X-Audit-Seq": str(result.audit_seq),
        "X-Request-Id": request_id(request) or "",
    }
    return Response(data, media_type="image/jpeg", headers=headers)


@router.post(
    "/verify",
    summary="1:1: do two photos show the same person? (purpose required, audited)",
    openapi_extra=body_doc(VerifyJSON, VerifyParams, {"image_a": "one", "image_b": "one"}),
)
async def verify(request: Request, vault: Vault = vault_for("searcher")) -> dict[str, Any]:
    body, files = await parse_body(request, VerifyJSON, VerifyParams, max_files=2)
    a = await _image(request, files, "image_a", getattr(body, "image_a_base64", None))
    b = await _image(request, files, "image_b", getattr(body, "image_b_base64", None))
    result = await run_sync(
        request,
        vault.verify,
        a,
        b,
        model=known_model(body.model),
        purpose=body.purpose,
        case_id=body.case_id,
        fmr=body.fmr,
        threshold=body.threshold,
    )
    return {**to_json(result), "request_id": request_id(request)}
