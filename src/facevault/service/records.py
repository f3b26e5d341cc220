"""Records for accountability: the audit log (read, verify, export) and the GDPR Art. 30 record of
processing activities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import audit
from ..audit_events import AuditExported
from ..config import ROLES, controller_setting
from ..errors import InputError
from ..results import AuditEntry, ProcessingRecord
from .api_keys import role_counts
from .collections import list_collections
from .context import ServiceContext

EXPORT_FORMATS = ("jsonl", "csv")


def audit_entries(ctx: ServiceContext, limit: int = 100, **filters: Any) -> list[AuditEntry]:
    """Newest first; filters: action, actor, case_id, collection, since, until."""
    with ctx.read() as conn:
        return [AuditEntry.from_row(r) for r in audit.entries(conn, limit, **filters)]


def verify_audit(ctx: ServiceContext, checkpoint: Any = None) -> audit.ChainStatus:
    with ctx.read() as conn:
        return audit.verify_chain(conn, ctx.keys.audit_key)


def audit_checkpoint(ctx: ServiceContext) -> dict[str, Any]:
    raise NotImplementedError("issue 11: audit checkpoints")


def acknowledge_chain_break(ctx: ServiceContext, reason: str) -> dict[str, Any]:
    raise NotImplementedError("issue 11: chain breaks")


def audit_export(
    ctx: ServiceContext, *, since: datetime | None = None, until: datetime | None = None, fmt: str = "jsonl"
) -> str:
    """The log between ``since`` and ``until``, oldest first; the export itself is audited."""
    if fmt not in EXPORT_FORMATS:
        raise InputError("format must be jsonl or csv")
    with ctx.write() as conn:
        rows = audit.entries(conn, 0, since=since, until=until, newest_first=False)
        ctx.log(
            conn,
            AuditExported(
                entries=len(rows),
                format=fmt,
                since=since.isoformat() if since else None,
                until=until.isoformat() if until else None,
            ),
        )
    return "".join(audit.export(rows, fmt))


def processing_record(ctx: ServiceContext) -> ProcessingRecord:
    """The GDPR Art. 30 record of processing activities for this deployment."""
    with ctx.read() as conn:
        counts = ctx.store.counts(conn)
    colls = list_collections(ctx)
    return ProcessingRecord(
        controller=controller_setting(),
        categories_of_data=[
            "face templates (biometric data, GDPR Art. 9)",
            *(
                ["face crops of enrolled photos, encrypted (collections that keep them)"]
                if any(c["keep_crops"] for c in colls)
                else []
            ),
            "names and external ids",
            "consent records",
            "audit log of searches",
        ],
        collections=[
            {
                "name": c["name"],
                "purpose": c.get("purpose"),
                "legal_basis": c.get("legal_basis") or "explicit consent (GDPR Art. 9(2)(a))",
                "model_id": c["model_id"],
                "subjects": c["subjects"],
                "samples": c["samples"],
                "retention_days_after_last_interaction": c.get("retention_days"),
                "keep_crops": bool(c["keep_crops"]),
            }
            for c in colls
        ],
        counts=counts,
        recipients={"roles": list(ROLES), "api_keys_per_role": role_counts(ctx)},
        transfers="none: the data stays on this deployment",
        retention="see `facevault retention policy`",
        security_measures=[
            "templates stored only in protected form: secret orthogonal transform + AES-256-GCM at rest",
            "keys kept outside the database (0600 key file or environment), renewable by rotation",
            "hash-chained, keyed audit log of every search, verification, enrollment and erasure",
            "purpose required for every search; consent record required for every enrolled person",
            "secure_delete and WAL truncation on erasure; indexes rebuilt without erased entries",
            "role-based API keys stored hashed; loopback-only default binding",
        ],
    )
