"""Human review (EU AI Act Art. 14): a case's search candidates and reviewers' decisions on them.

The reviewer is the calling key (the service records the principal ``key:<prefix>``), never a name in
the request; the key's name is shown with it: ``<key name> (key:<prefix>)``. So one key cannot confirm a
candidate twice under two names, and a match reaches "confirmed" only after two different keys confirmed
it. Give each reviewer their own key. A key without a name (only possible for keys written to the store
by hand) cannot review: the service answers ``reviewer_required``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

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


@router.get("/{case_id}", summary="A case's candidates and their review state: pending, confirmed, rejected")
async def review_status(
    request: Request,
    case_id: str = CaseId,
    principal: Principal = Depends(require("reviewer")),
    vault: Vault = vault_for("reviewer"),
) -> dict[str, Any]:
    status = await run_sync(request, vault.review_status, case_id)
    return {**to_json(status), "you": reviewer_of(principal)}


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
