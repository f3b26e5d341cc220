"""Append-only, hash-chained log of every search, verification and change.

Each entry's hash covers its own fields and the previous entry's hash, so editing, deleting, inserting
or reordering any entry breaks the chain at that point. Entries never hold images or templates, only
the probe's SHA-256 and what was returned.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from .store.database import as_utc, utcnow
from .store.schema import audit_log

GENESIS = "0" * 64


def _canonical(entry: dict[str, Any]) -> bytes:
    fields = {
        k: entry.get(k)
        for k in (
            "seq",
            "at",
            "action",
            "actor",
            "purpose",
            "case_id",
            "collection",
            "probe_sha256",
            "details",
            "prev_hash",
        )
    }
    at = fields["at"]
    if at is not None and not isinstance(at, str):
        fields["at"] = as_utc(at).isoformat()  # type: ignore[union-attr]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def append(
    conn: Connection,
    action: str,
    *,
    actor: str,
    purpose: str | None = None,
    case_id: str | None = None,
    collection: str | None = None,
    probe_sha256: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry inside the caller's transaction; returns its sequence number."""
    last = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq = (last[0] + 1) if last else 1
    entry: dict[str, Any] = {
        "seq": seq,
        "at": utcnow(),
        "action": action,
        "actor": actor,
        "purpose": purpose,
        "case_id": case_id,
        "collection": collection,
        "probe_sha256": probe_sha256,
        "details": json.dumps(details or {}, sort_keys=True, separators=(",", ":")),
        "prev_hash": last[1] if last else GENESIS,
    }
    entry["hash"] = entry_hash(entry)
    conn.execute(insert(audit_log).values(**entry))
    return seq


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        }


def verify_chain(conn: Connection) -> ChainStatus:
    prev = GENESIS
    expected_seq = 1
    n = 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
        entry = dict(row)
        n += 1
        if entry["seq"] != expected_seq:
            return ChainStatus(False, n, entry["seq"], f"sequence gap: expected {expected_seq}")
        if entry["prev_hash"] != prev:
            return ChainStatus(False, n, entry["seq"], "does not link to the previous entry")
        if entry_hash(entry) != entry["hash"]:
            return ChainStatus(False, n, entry["seq"], "entry content does not match its hash")
        prev = entry["hash"]
        expected_seq += 1
    return ChainStatus(True, n)


def entries(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["at"] = as_utc(d["at"]).isoformat()  # type: ignore[union-attr]
        d["details"] = json.loads(d["details"])
        out.append(d)
    return out
