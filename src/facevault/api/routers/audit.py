"""Reading, verifying and exporting the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ...config import as_utc, utcnow
from ...errors import FaceVaultError, InputError
from ...service import Vault
from ..deps import vault_for
from ..errors import error_body, request_id_of
from ..runner import run_sync
from ..serialize import to_json

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
# A request id is kept in an entry's details, which the store cannot filter on, and the store pages by
# time only: the request_id and before filters look at this many of the newest entries that pass the
# other filters (with before, pass until near that entry's time and the window starts there).
REQUEST_ID_WINDOW = 10_000
Since = Query(default=None, description="From this time (ISO 8601; a date means midnight UTC), inclusive.")
Until = Query(default=None, description="Up to this time (ISO 8601), exclusive.")


def utc(value: datetime | None, field: str) -> datetime | None:
    """A time as UTC (a time without a zone is taken as UTC), as the log stores it."""
    try:
        return as_utc(value)
    except (OverflowError, ValueError):
        raise InputError(f"{field} is out of range", code="invalid_time") from None


# Where an entry's details name subjects by id (the log itself holds ids, never names).
SUBJECT_ID_FIELDS = ("subject_id", "from_subject_id", "to_subject_id")
SUBJECT_ID_LISTS = ("subject_ids", "subjects_erased")
# Roles that may read subject names anyway (admin: every use case; None: the local CLI). An auditor
# reads the log, not the gallery: it sees ids only (docs/PRIVACY.md, "Audit log").
MAY_SEE_SUBJECT_NAMES = (None, "admin")


@router.get(
    "",
    summary="Newest audit entries first, optionally filtered; each names the actor's key "
    "(actor_name) and, for an admin, the subjects its details refer to (subject_names)",
)
async def list_audit(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    action: str | None = Query(default=None, max_length=50, description="Exact action, e.g. search."),
    actor: str | None = Query(default=None, max_length=200, description="Exact actor, e.g. key:1a2b3c4d."),
    collection: str | None = Query(default=None, max_length=200),
    case_id: str | None = Query(default=None, max_length=200),
    request_id: str | None = Query(default=None, max_length=64, description="Entries of one API request."),
    before: int | None = Query(
        default=None,
        ge=1,
        description="Only entries older than this sequence number (the next page: the last entry's seq; "
        "give until too, e.g. that entry's time rounded up, so the page is found fast).",
    ),
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
    windowed = bool(request_id) or before is not None
    rows = to_json(
        await run_sync(
            request,
            vault.audit_entries,
            REQUEST_ID_WINDOW if windowed else limit,
            **{k: v for k, v in filters.items() if v},
        )
    )
    if request_id:
        rows = [e for e in rows if request_id in _request_ids(e)]
    if before is not None:
        rows = [e for e in rows if int(e["seq"]) < before]
    rows = rows[:limit]
    return await run_sync(request, _with_names, vault, rows)


def _with_names(vault: Vault, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry with ``actor_name`` (the name its API key was given, when the actor is a key) and,
    where the caller may read subjects, ``subject_names`` ({id: name} of the subjects its details name
    that still exist; an erased subject stays an id). Names are looked up now: the log keeps ids."""
    keys = {f"key:{k.prefix}": k.name for k in vault.list_api_keys()}
    subjects: dict[int, str] = {}
    if vault.role in MAY_SEE_SUBJECT_NAMES:
        for coll in sorted({str(e["collection"]) for e in rows if e.get("collection") and _subject_ids(e)}):
            try:
                subjects.update({int(s["id"]): str(s["name"]) for s in vault.list_subjects(coll)})
            except FaceVaultError:  # a collection deleted since: its subjects are gone
                continue
    out = []
    for e in rows:
        named = {**e, "actor_name": keys.get(str(e.get("actor")))}
        if vault.role in MAY_SEE_SUBJECT_NAMES:
            named["subject_names"] = {str(i): subjects[i] for i in sorted(_subject_ids(e)) if i in subjects}
        out.append(named)
    return out


def _subject_ids(entry: dict[str, Any]) -> set[int]:
    """The subject ids an entry's details name: single fields, lists, and a search's candidates
    (``[[subject id, similarity], ...]`` per face, or one such list)."""
    details = entry.get("details") or {}
    ids: set[int] = set()
    for k in SUBJECT_ID_FIELDS:
        if isinstance(details.get(k), int):
            ids.add(details[k])
    for k in SUBJECT_ID_LISTS:
        ids.update(i for i in details.get(k) or [] if isinstance(i, int))

    def pairs(value: Any) -> None:
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int)
            and not isinstance(value[1], list)
        ):
            ids.add(value[0])
        elif isinstance(value, list):
            for v in value:
                pairs(v)

    if entry.get("action") in ("search", "review"):
        pairs(details.get("candidates"))
    return ids


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
