"""Human review (EU AI Act Art. 14): a case's search candidates and reviewers' decisions on them.

The reviewer is the calling key (the service records the principal ``key:<prefix>``), never a name in
the request; the key's name is shown with it: ``<key name> (key:<prefix>)``. So one key cannot confirm a
candidate twice under two names, and a match reaches "confirmed" only after two different keys confirmed
it. Give each reviewer their own key. A key without a name (only possible for keys written to the store
by hand) cannot review: the service answers ``reviewer_required``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ...results import Principal
from ...service import Vault
from ..auth import require
from ..deps import request_id, vault_for
from ..runner import run_sync
from ..schemas import ReviewDecision
from ..serialize import to_json

router = APIRouter(prefix="/api/v1/review", tags=["review"])
CaseId = Path(min_length=1, max_length=200, description="The case id given to the searches.")


def reviewer_of(principal: Principal) -> str:
    """The reviewer recorded for a key: its name and prefix, or "" when the key has no name."""
    name = (principal.name or "").strip()
    return f"{name} (key:{principal.prefix})" if name else ""


@router.get("", summary="The review queue: every case with candidates, open cases (pending ones) first")
async def review_queue(request: Request, vault: Vault = vault_for("reviewer")) -> list[dict[str, Any]]:
    return await run_sync(request, vault.review_queue)  # type: ignore[no-any-return]


def _status(vault: Vault, case_id: str) -> dict[str, Any]:
    status = to_json(vault.review_status(case_id))
    extra = vault.review_details(case_id)
    for c in status["candidates"]:
        c.update(extra["candidates"].get(c["candidate_id"], {}))
    return {**status, "exists": extra["exists"]}


@router.get(
    "/{case_id}",
    summary="A case's candidates and their review state (pending, confirmed, rejected), each decision "
    "with its note, and whether the probe is kept; exists: false when no search named the case",
)
async def review_status(
    request: Request,
    case_id: str = CaseId,
    principal: Principal = Depends(require("reviewer")),
    vault: Vault = vault_for("reviewer"),
) -> dict[str, Any]:
    status = await run_sync(request, _status, vault, case_id)
    return {**status, "you": reviewer_of(principal)}


@router.get(
    "/{case_id}/probe",
    summary="The kept probe of a candidate: its face crop (view=face) or the whole photo with that face "
    "boxed (view=photo); each one shown is audited (review.view), every refusal is 404 probe_unavailable",
    responses={200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def review_probe(
    request: Request,
    case_id: str = CaseId,
    candidate: int = Query(ge=1, le=2**62, description="The candidate id."),
    view: str = Query(default="face", pattern="^(face|photo)$"),
    vault: Vault = vault_for("reviewer"),
) -> Response:
    data = await run_sync(request, vault.review_probe, case_id, candidate, view)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post(
    "/{case_id}/decisions",
    summary="Confirm or reject one candidate of a case, as the calling key (one decision per key)",
)
async def review_decide(
    request: Request,
    body: ReviewDecision,
    case_id: str = CaseId,
    principal: Principal = Depends(require("reviewer")),
    vault: Vault = vault_for("reviewer"),
) -> dict[str, Any]:
    # The principal that counts is the acting vault's (the key); the key's name is only shown with it.
    name = (principal.name or "").strip()
    result = await run_sync(request, vault.review, case_id, body.candidate, body.decision, name, body.note)
    return {**to_json(result), "case_id": case_id, "request_id": request_id(request)}
