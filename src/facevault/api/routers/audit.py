"""Reading and verifying the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..auth import require
from ..context import vault_as
from ..keys import Principal
from ..runner import run_sync

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
# Filters are applied to this many of the newest entries.
FILTER_WINDOW = 10_000


@router.get("", summary="Newest audit entries first, optionally filtered")
async def list_audit(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    action: str | None = Query(default=None, max_length=50, description="Exact action, e.g. search."),
    actor: str | None = Query(default=None, max_length=200, description="Part of the actor."),
    collection: str | None = Query(default=None, max_length=200),
    case_id: str | None = Query(default=None, max_length=200),
    request_id: str | None = Query(default=None, max_length=64, description="Entries of one API request."),
    principal: Principal = Depends(require("auditor")),
) -> list[dict[str, Any]]:
    filtered = any(v for v in (action, actor, collection, case_id, request_id))
    rows = await run_sync(
        request, vault_as(request, principal).audit_entries, FILTER_WINDOW if filtered else limit
    )

    def keep(e: dict[str, Any]) -> bool:
        return (
            (not action or e["action"] == action)
            and (not actor or actor in e["actor"])
            and (not collection or e["collection"] == collection)
            and (not case_id or e["case_id"] == case_id)
            and (not request_id or request_id in _request_ids(e))
        )

    return [e for e in rows if keep(e)][:limit]


def _request_ids(entry: dict[str, Any]) -> set[str]:
    """Where a request id is recorded: ``details.request_id`` once the service takes it, the actor
    (``key:... request:<id>``) until then."""
    details = entry.get("details") or {}
    ids = {str(entry.get("request_id") or ""), str(details.get("request_id") or "")}
    actor = entry.get("actor") or ""
    if " request:" in actor:
        ids.add(actor.rsplit(" request:", 1)[1])
    return ids - {""}


@router.get("/verify", summary="Check the hash chain: verified, or the first broken entry")
async def verify_audit(
    request: Request, principal: Principal = Depends(require("auditor"))
) -> dict[str, Any]:
    status = await run_sync(request, vault_as(request, principal).verify_audit)
    return status.to_dict()
