"""Records for accountability: the audit log (read, verify, export) and the GDPR Art. 30 record of
processing activities."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import audit
from ..audit_events import AuditCheckpointed, AuditExported, ChainBreakAcknowledged
from ..config import ROLES, controller_setting
from ..errors import ConflictError, InputError, IntegrityError
from ..results import AuditEntry, ProcessingRecord
from .api_keys import role_counts
from .collections import list_collections
from .context import ServiceContext

EXPORT_FORMATS = ("jsonl", "csv")


def audit_entries(ctx: ServiceContext, limit: int = 100, **filters: Any) -> list[AuditEntry]:
    """Newest first; filters: action, actor, case_id, collection, since, until."""
    with ctx.read() as conn:
        return [AuditEntry.from_row(r) for r in audit.entries(conn, limit, **filters)]


MAX_REASON = 2000


def load_checkpoint(checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint from a file (as ``audit checkpoint`` printed it) or as its JSON object."""
    if isinstance(checkpoint, Mapping):
        return audit.parse_checkpoint(checkpoint)
    path = Path(checkpoint)
    try:
        if not path.is_file():
            raise InputError(f"checkpoint {path} is not a file", code="invalid_checkpoint")
        text = path.read_bytes()[:65536].decode("utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read checkpoint {path}: {exc}", code="invalid_checkpoint") from None
    return audit.parse_checkpoint(data)


def verify_audit(
    ctx: ServiceContext, checkpoint: str | os.PathLike[str] | Mapping[str, Any] | None = None
) -> audit.ChainStatus:
    """The chain, both heads and (given) a checkpoint; a malformed state is a problem in the status,
    never an exception (``doctor`` and ``audit verify`` share this)."""
    cp = None if checkpoint is None else load_checkpoint(checkpoint)
    external = ctx.audit_head.read()  # before the snapshot: the file never runs ahead of a later one
    with ctx.read() as conn:
        return audit.verify_chain(conn, ctx.keys.audit_key, external, cp)


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint: ``to_dict()`` is the JSON to keep somewhere the vault's users cannot write."""

    seq: int
    hash: str
    at: str
    mac: str
    format: str = audit.CHECKPOINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "seq": self.seq, "hash": self.hash, "at": self.at, "mac": self.mac}


def _refuse_broken(status: audit.ChainStatus, doing: str) -> None:
    if not status.ok:
        raise IntegrityError(
            f"the audit log does not verify, so it cannot {doing}: {status.problem} "
            "(see `facevault audit verify`)",
            code="audit_chain_broken",
        )


def audit_checkpoint(ctx: ServiceContext) -> Checkpoint:
    """Verify the log, then record an ``audit.checkpoint`` entry and sign a checkpoint naming it."""
    _refuse_broken(verify_audit(ctx), "be checkpointed")
    with ctx.write() as conn:
        ctx.log(conn, AuditCheckpointed())
        appended = audit.pending(conn)
        if (
            appended is None or appended.breaks
        ):  # the log was cut between the verification and now: roll back, refuse
            raise IntegrityError(
                "the audit log's end moved while the checkpoint was taken: run `facevault audit verify`",
                code="audit_chain_broken",
            )
    return Checkpoint(**audit.make_checkpoint(appended.head, ctx.keys.audit_key))


@dataclass(frozen=True)
class Acknowledgement:
    seq: int
    reason: str
    problems: list[dict[str, Any]] = field(default_factory=list)
    table_recreated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_seq": self.seq,
            "reason": self.reason,
            "acknowledged": self.problems,
            "table_recreated": self.table_recreated,
        }


def acknowledge_chain_break(ctx: ServiceContext, reason: str) -> Acknowledgement:
    """An admin's acknowledgement of every problem verification finds now (a dropped table is created
    again, a cut end recorded as a break first); itself an audit entry that names what it covers.
    What it cannot undo stays visible: a checkpoint the log no longer extends keeps failing."""
    if ctx.role not in (None, "admin"):
        raise ConflictError("only an admin may acknowledge a chain break", code="admin_required")
    reason = (reason or "").strip()
    if not reason:
        raise InputError("say why the break is acknowledged (--reason)", code="reason_required")
    if len(reason) > MAX_REASON:
        raise InputError(f"the reason is longer than {MAX_REASON} characters", code="reason_too_long")
    with ctx.write() as conn:
        recreated = audit.ensure_table(conn)
        problem = "the audit_log table was missing (dropped); it was created again" if recreated else None
        ctx.check_audit_tail(conn, problem)
        open_problems = audit.scan(conn, ctx.keys.audit_key).open
        if not open_problems:
            raise ConflictError("the audit log has no chain break to acknowledge", code="no_chain_break")
        seq = ctx.log(
            conn,
            ChainBreakAcknowledged(
                reason=reason,
                acknowledged=[p.ident for p in open_problems],
                problems=[p.to_dict() for p in open_problems],
            ),
        )
    return Acknowledgement(seq, reason, [p.to_dict() for p in open_problems], recreated)


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
            "hash-chained, keyed audit log of every search, verification, enrollment and erasure; its head "
            "also kept outside the database; breaks stay visible until acknowledged; signed checkpoints",
            "purpose required for every search; consent record required for every enrolled person",
            "secure_delete and WAL truncation on erasure; indexes rebuilt without erased entries",
            "role-based API keys stored hashed; loopback-only default binding",
        ],
    )
