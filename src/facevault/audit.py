"""Append-only, keyed hash chain of every search, verification, enrollment, erasure and consent change.

Each entry's ``hash`` is an HMAC-SHA256, under the deployment's audit key (kept outside the database,
see privacy/keys.py), of its own fields and the previous entry's hash. Someone who can edit the database
but lacks the key cannot repair the chain after editing, deleting, inserting or reordering an entry:
``verify_chain`` names the first entry where it breaks. The head of the chain (last sequence number and
hash) is also kept, MACed, in ``vault_meta``, so cutting entries off the end is detected too. Entries hold
no images and no templates: only the probe's SHA-256 and what was returned.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from .clock import as_utc, utcnow
from .store.schema import audit_log, meta

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
FIELDS = (
    "seq",
    "at",
    "action",
    "actor",
    "role",
    "purpose",
    "case_id",
    "collection",
    "probe_sha256",
    "details",
    "prev_hash",
)


def _canonical(entry: dict[str, Any]) -> bytes:
    fields = {k: entry.get(k) for k in FIELDS}
    at = fields["at"]
    if at is not None and not isinstance(at, str):
        fields["at"] = as_utc(at).isoformat()  # type: ignore[union-attr]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


def _head_mac(seq: int, digest: str, key: bytes) -> str:
    return hmac.new(key, f"head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def append(
    conn: Connection,
    action: str,
    *,
    key: bytes,
    actor: str,
    role: str | None = None,
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
        "role": role,
        "purpose": purpose,
        "case_id": case_id,
        "collection": collection,
        "probe_sha256": probe_sha256,
        "details": json.dumps(details or {}, sort_keys=True, separators=(",", ":")),
        "prev_hash": last[1] if last else GENESIS,
    }
    entry["hash"] = entry_hash(entry, key)
    conn.execute(insert(audit_log).values(**entry))
    head = json.dumps({"seq": seq, "hash": entry["hash"], "mac": _head_mac(seq, entry["hash"], key)})
    if conn.execute(select(meta.c.key).where(meta.c.key == HEAD_KEY)).first():
        conn.execute(update(meta).where(meta.c.key == HEAD_KEY).values(value=head))
    else:
        conn.execute(insert(meta).values(key=HEAD_KEY, value=head))
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


def verify_chain(conn: Connection, key: bytes) -> ChainStatus:
    prev = GENESIS
    expected_seq = 1
    n = 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
        entry = dict(row)
        n += 1
        seq = entry["seq"]
        if seq != expected_seq:
            return ChainStatus(False, n, seq, f"entry #{expected_seq} is missing (next entry is #{seq})")
        if entry["prev_hash"] != prev:
            return ChainStatus(
                False, n, seq, "does not link to the entry before it (deleted, inserted or moved)"
            )
        if not hmac.compare_digest(entry_hash(entry, key), entry["hash"]):
            return ChainStatus(False, n, seq, "content was changed after it was written")
        prev = entry["hash"]
        expected_seq += 1
    raw = conn.execute(select(meta.c.value).where(meta.c.key == HEAD_KEY)).scalar()
    if raw is None:
        if n:
            return ChainStatus(False, n, None, "the chain head record is missing")
        return ChainStatus(True, 0)
    head = json.loads(raw)
    if not hmac.compare_digest(_head_mac(int(head["seq"]), str(head["hash"]), key), str(head["mac"])):
        return ChainStatus(False, n, int(head["seq"]), "the chain head record was altered")
    if int(head["seq"]) != n or head["hash"] != prev:
        return ChainStatus(
            False, n, n + 1, f"entries after #{n} were removed (the log ended at #{head['seq']})"
        )
    return ChainStatus(True, n)


def _row_out(row: dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    d["at"] = as_utc(d["at"]).isoformat()  # type: ignore[union-attr]
    d["details"] = json.loads(d["details"])
    return d


def entries(
    conn: Connection,
    limit: int = 100,
    *,
    action: str | None = None,
    actor: str | None = None,
    case_id: str | None = None,
    collection: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    q = select(audit_log)
    c = audit_log.c
    if action:
        q = q.where(c.action == action)
    if actor:
        q = q.where(c.actor == actor)
    if case_id:
        q = q.where(c.case_id == case_id)
    if collection:
        q = q.where(c.collection == collection)
    if since:
        q = q.where(c.at >= since)
    if until:
        q = q.where(c.at < until)
    q = q.order_by(c.seq.desc() if newest_first else c.seq)
    if limit:
        q = q.limit(limit)
    return [_row_out(dict(r)) for r in conn.execute(q).mappings()]


EXPORT_COLUMNS = (*FIELDS, "hash")


def export(rows: list[dict[str, Any]], fmt: str) -> Iterator[str]:
    """Rows as JSON lines or CSV (details as a JSON string), oldest first."""
    if fmt == "jsonl":
        for r in rows:
            yield json.dumps({k: r.get(k) for k in EXPORT_COLUMNS}, ensure_ascii=False) + "\n"
        return
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow(
            [json.dumps(r[k], sort_keys=True) if k == "details" else r.get(k) for k in EXPORT_COLUMNS]
        )
    yield buf.getvalue()
