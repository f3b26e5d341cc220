"""Reading, verifying and exporting the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ...config import as_utc, utcnow
from ...errors import InputError
from ...service import Vault
from ..deps import vault_for
from ..errors import error_body, request_id_of
from ..runner import run_sync
from ..serialize import to_json

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
# A request id is kept in an entry's details, which the store cannot filter on: that filter looks at
# this many of the newest entries that pass the other filters.
REQUEST_ID_WINDOW = 10_000
Since = Query(default=None, description="From this time (ISO 8601; a date means midnight UTC), inclusive.")
Until = Query(default=None, description="Up to this time (ISO 8601), exclusive.")


def utc(value: datetime | None, field: str) -> datetime | None:
    """A time as UTC (a time without a zone is taken as UTC), as the log stores it."""
    try:
        return as_utc(value)
    except (OverflowError, ValueError):
        raise InputError(f"{field} is out of range", code="invalid_time") from None


@router.get("", summary="Newest audit entries first, optionally filtered")
async def list_audit(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    action: str | None = Query(default=None, max_length=50, description="Exact action, e.g. search."),
    actor: str | None = Query(default=None, max_length=200, description="Exact actor, e.g. key:1a2b3c4d."),
    collection: str | None = Query(default=None, max_length=200),
    case_id: str | None = Query(default=None, max_length=200),
    request_id: str | None = Query(default=None, max_length=64, description="Entries of one API request."),
    since: datetime | None = Since,
    until: datetime | None = Until,
    vault: Vault = vault_for("auditor"),
) -> list[dict[str, Any]]:
    filters = {
        "action": action,
        "actor": actor,
        "collection": collection,
        "case_id": case_id,
        "since": utc(since, "since"),
        "until": utc(until, "until"),
    }
    rows = to_json(
        await run_sync(
            request,
            vault.audit_entries,
            REQUEST_ID_WINDOW if request_id else limit,
            **{k: v for k, v in filters.items() if v},
        )
    )
    if request_id:
        rows = [e for e in rows if request_id in _request_ids(e)][:limit]
    return rows


def _request_ids(entry: dict[str, Any]) -> set[str]:
    details = entry.get("details") or {}
    return {str(details.get("request_id") or "")} - {""}


def _verified(request: Request, status: Any) -> Any:
    """The status when the log verifies; else 409 ``audit_chain_broken`` with the status in the error."""
    body = to_json(status)
    if body["ok"]:
        return body
    where = f"entry {body['first_bad_seq']}" if body["first_bad_seq"] is not None else "its head"
    message = f"the audit log is broken at {where}: {body['problem']}"
    return JSONResponse(
        error_body("audit_chain_broken", message, request_id_of(request), status=body), status_code=409
    )


@router.get(
    "/verify",
    summary="Check the hash chain and its heads: the status, or 409 audit_chain_broken naming the problems",
)
async def verify_audit(request: Request, vault: Vault = vault_for("auditor")) -> Any:
    return _verified(request, await run_sync(request, vault.verify_audit))


class CheckpointBody(BaseModel):
    checkpoint: dict[str, Any] = Field(description="A checkpoint as POST /audit/checkpoint returned it.")


@router.post(
    "/verify",
    summary="The same, and prove the log still extends a checkpoint taken earlier",
)
async def verify_audit_checkpoint(
    request: Request, body: CheckpointBody, vault: Vault = vault_for("auditor")
) -> Any:
    return _verified(request, await run_sync(request, vault.verify_audit, body.checkpoint))


@router.post(
    "/checkpoint",
    summary="A signed checkpoint (sequence, head MAC, time) to keep elsewhere; audited",
)
async def audit_checkpoint(request: Request, vault: Vault = vault_for("auditor")) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.audit_checkpoint))


class AcknowledgeBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why the break is acknowledged.")


@router.post(
    "/acknowledge",
    summary="Acknowledge every problem verification finds now (admin; audited)",
)
async def acknowledge_break(
    request: Request, body: AcknowledgeBody, vault: Vault = vault_for("admin")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.acknowledge_chain_break, body.reason))


@router.get(
    "/export",
    summary="Download the audit log (oldest first) as JSON Lines or CSV; the export itself is audited",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def export_audit(
    request: Request,
    format: Literal["jsonl", "csv"] = Query(default="jsonl"),
    since: datetime | None = Since,
    until: datetime | None = Until,
    vault: Vault = vault_for("auditor"),
) -> Response:
    text = await run_sync(
        request,
        vault.audit_export,
        since=utc(since, "since"),
        until=utc(until, "until"),
        fmt=format,
    )
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        text,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="facevault-audit-{stamp}.{format}"'},
    )
