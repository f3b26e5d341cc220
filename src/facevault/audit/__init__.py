"""Append-only, keyed hash chain of every search, verification, enrollment, erasure and consent change.

Each entry's ``hash`` is an HMAC-SHA256, under the deployment's audit key (kept outside the database,
see protection.py), of its own fields and the previous entry's hash. Someone who can edit the database
but lacks the key cannot repair the chain after editing, deleting, inserting or reordering an entry.

The head of the chain (last sequence number and hash) is kept twice, both MACed (audit/heads.py): in
``vault_meta`` (in the same transaction as the entry) and in a file outside the database, next to the
keys (``ExternalHead``, written after the commit, atomically and never backwards). So cutting entries off
the end, wiping the table, or rolling the database back to a copy is detected even when the head record
goes with it.

A break, once there, stays visible. ``append`` never links over a gap silently: the first append of a
transaction checks that the log ends where both heads say; if not, it first writes a ``chain_break`` entry
(linked to the last surviving entry, with a sequence number past every one seen, so numbers are never
reused) saying what was found. ``verify_chain`` reports every problem (edited, missing, inserted or moved
entries, recorded breaks, heads that disagree) until an admin's ``audit.acknowledge`` entry names it.

Entries hold no images and no templates: only the probe's SHA-256 and what was returned.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, String, insert, inspect, select, type_coerce
from sqlalchemy.exc import DBAPIError

from ..clock import as_utc, utcnow
from ..errors import IntegrityError
from ..store.schema import audit_log
from .heads import (
    CHECKPOINT_FORMAT,
    EMPTY,
    GENESIS,
    HEAD_KEY,
    DbHead,
    ExternalHead,
    ExternalState,
    Head,
    Problem,
    checkpoint_problem,
    head_problems,
    make_checkpoint,
    parse_checkpoint,
    read_db_head,
    same,
    write_db_head,
)

__all__ = [
    "ACKNOWLEDGE",
    "BREAK",
    "CHECKPOINT_FORMAT",
    "GENESIS",
    "HEAD_KEY",
    "BreakFacts",
    "ChainStatus",
    "DbHead",
    "ExternalHead",
    "ExternalState",
    "Head",
    "Pending",
    "Problem",
    "append",
    "check_tail",
    "ensure_table",
    "entries",
    "entry_hash",
    "export",
    "make_checkpoint",
    "parse_checkpoint",
    "pending",
    "read_db_head",
    "scan",
    "verify_chain",
]

BREAK = "chain_break"  # the action of audit_events.ChainBreak
ACKNOWLEDGE = "audit.acknowledge"
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
EXPORT_COLUMNS = (*FIELDS, "hash")
_PENDING = "facevault.audit_pending"  # conn.info: what this transaction appended


def _canonical(entry: Mapping[str, Any]) -> bytes:
    fields = {k: entry.get(k) for k in FIELDS}
    at = fields["at"]
    if at is not None and not isinstance(at, str):
        fields["at"] = as_utc(at).isoformat()  # type: ignore[union-attr]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


def _missing_table(exc: DBAPIError) -> bool:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig).lower()
    return state in {"42P01", "42703"} or "no such table" in text or "no such column" in text


def _unreadable(exc: DBAPIError) -> IntegrityError:
    return IntegrityError(
        "the audit log table is missing or damaged, so nothing can be recorded: run `facevault audit "
        f"verify`, then `facevault audit acknowledge --reason ...` to start it again ({exc.orig})",
        code="audit_log_missing",
    )


# ---- appending -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """What the current transaction appended: its last entry, and how many breaks it recorded."""

    head: Head
    external: bool
    breaks: int


def pending(conn: Connection) -> Pending | None:
    """What the open transaction of ``conn`` appended, if anything (the head to write after commit)."""
    held = conn.info.get(_PENDING)
    if held is not None and held[0] is conn.get_transaction():
        return held[1]  # type: ignore[no-any-return]
    return None


def _set_pending(conn: Connection, value: Pending) -> None:
    conn.info[_PENDING] = (conn.get_transaction(), value)


def _insert(conn: Connection, seq: int, action: str, prev: str, key: bytes, fields: dict[str, Any]) -> str:
    entry: dict[str, Any] = {
        "seq": seq,
        "at": utcnow(),
        "action": action,
        "actor": fields["actor"],
        "role": fields.get("role"),
        "purpose": fields.get("purpose"),
        "case_id": fields.get("case_id"),
        "collection": fields.get("collection"),
        "probe_sha256": fields.get("probe_sha256"),
        "details": json.dumps(fields.get("details") or {}, sort_keys=True, separators=(",", ":")),
        "prev_hash": prev,
    }
    entry["hash"] = entry_hash(entry, key)
    conn.execute(insert(audit_log).values(**entry))
    return str(entry["hash"])


def _last(conn: Connection) -> Head:
    row = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    return Head(int(row[0]), str(row[1])) if row else EMPTY


def _hash_at(conn: Connection, seq: int) -> str | None:
    value = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq)).scalar()
    return None if value is None else str(value)


class Event(Protocol):
    """What ``append`` needs of an audit event (audit_events.AuditEvent)."""

    action: str

    def entry(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BreakFacts:
    """What an append found at the log's end: the event written for it is the service's to build."""

    problem: str
    found: Head
    db_head: Head | None
    external_head: Head | None


BreakEvent = Callable[[BreakFacts], Event]


def check_tail(
    conn: Connection,
    key: bytes,
    external: ExternalHead | None,
    *,
    actor: str,
    role: str | None = None,
    on_break: BreakEvent | None = None,
    problem: str | None = None,
) -> Pending:
    """Inside a write transaction: the log's end, after writing a ``chain_break`` entry there (the event
    ``on_break`` builds) if it is not where the heads say, or ``problem`` is given. Without ``on_break``
    such an end is refused. Cheap: the last entry, the head record, the head file."""
    tail = _last(conn)
    db = read_db_head(conn, key)
    ext = external.read() if external is not None else None
    ext_hash = _hash_at(conn, ext.head.seq) if ext and ext.head and 0 < ext.head.seq <= tail.seq else None
    found = [p.message for p in head_problems(tail, db, ext, ext_hash)]
    expect_file = db.external or (ext is not None and ext.state != "absent")
    if problem:
        found.insert(0, problem)
    if not found:
        return Pending(tail, expect_file, 0)
    facts = BreakFacts("; ".join(found), tail, db.head, ext.head if ext else None)
    if on_break is None:
        raise IntegrityError(f"the audit log's end is broken: {facts.problem}", code="audit_chain_broken")
    event = on_break(facts)
    if event.action != BREAK:
        raise ValueError(f"a chain break is recorded as {BREAK!r}, not {event.action!r}")
    seq = 1 + max(tail.seq, db.head.seq if db.head else 0, ext.head.seq if ext and ext.head else 0)
    fields = {"actor": actor, "role": role, **event.entry()}
    head = Head(seq, _insert(conn, seq, BREAK, tail.hash, key, fields))
    write_db_head(conn, head, key, expect_file)
    result = Pending(head, expect_file, 1)
    _set_pending(conn, result)
    return result


def append(
    conn: Connection,
    action: str,
    *,
    key: bytes,
    actor: str,
    external: ExternalHead | None = None,
    on_break: BreakEvent | None = None,
    role: str | None = None,
    purpose: str | None = None,
    case_id: str | None = None,
    collection: str | None = None,
    probe_sha256: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry inside the caller's write transaction; returns its sequence number. The first
    append of a transaction checks the log's end first (``check_tail``): never linked over silently.
    The head file is the caller's to advance after the commit (``pending(conn).head``)."""
    fields = {
        "actor": actor,
        "role": role,
        "purpose": purpose,
        "case_id": case_id,
        "collection": collection,
        "probe_sha256": probe_sha256,
        "details": details,
    }
    try:
        before = pending(conn) or check_tail(conn, key, external, actor=actor, role=role, on_break=on_break)
        seq = before.head.seq + 1
        head = Head(seq, _insert(conn, seq, action, before.head.hash, key, fields))
        write_db_head(conn, head, key, before.external)
    except DBAPIError as exc:
        if _missing_table(exc):
            raise _unreadable(exc) from None
        raise
    _set_pending(conn, Pending(head, before.external, before.breaks))
    return seq


def ensure_table(conn: Connection) -> bool:
    """Create the log's table if it was dropped; True if it had to be."""
    if inspect(conn).has_table(audit_log.name):
        return False
    audit_log.create(conn)
    return True


# ---- reading rows robustly ---------------------------------------------------------------------------------
def _raw_select() -> Any:
    # The timestamp is read as the stored text and parsed here, so a garbage value is one bad entry
    # instead of an exception that ends the whole read.
    cols = [
        type_coerce(audit_log.c.at, String).label("at") if n == "at" else audit_log.c[n]
        for n in EXPORT_COLUMNS
    ]
    return select(*cols)


def _parse_at(conn: Connection, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError("the timestamp is not a time")
    parse = audit_log.c.at.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    parsed = parse(value) if parse else datetime.fromisoformat(value)
    if not isinstance(parsed, datetime):
        raise TypeError("the timestamp is not a time")
    return parsed


def _ident(seq: int, kind: str, message: str, row: Mapping[str, Any]) -> str:
    raw = json.dumps(dict(row), sort_keys=True, default=repr)
    return hashlib.sha256(f"{seq}|{kind}|{message}|{raw}".encode()).hexdigest()[:32]


def _details(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row["details"])
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Scan:
    """One pass over every entry: their problems (acknowledged or not) and the hashes asked for."""

    entries: int = 0
    tail: Head = EMPTY
    open: list[Problem] = field(default_factory=list)
    acknowledged: list[Problem] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)


def _row_problem(
    conn: Connection, row: Mapping[str, Any], key: bytes, prev: str, expected: int
) -> tuple[str, str] | None:
    seq = row["seq"]
    try:
        mac_ok = same(entry_hash({**row, "at": _parse_at(conn, row["at"])}, key), row["hash"])
    except (TypeError, ValueError, OverflowError) as exc:
        return "malformed", f"entry #{seq} is unreadable ({exc}): it was changed after it was written"
    if mac_ok and row["action"] == BREAK and row["prev_hash"] == prev:
        said = _details(row).get("problem") or "no reason recorded"
        return "chain_break", f"chain break recorded at #{seq}: {said}"
    if seq != expected:
        if seq == expected + 1:
            return "gap", f"entry #{expected} is missing (next entry is #{seq})"
        return "gap", f"entries #{expected} to #{seq - 1} are missing (next entry is #{seq})"
    if row["prev_hash"] != prev:
        return "link", f"entry #{seq} does not link to the entry before it (deleted, inserted or moved)"
    if not mac_ok:
        return "changed", f"entry #{seq}: content was changed after it was written"
    return None


def scan(conn: Connection, key: bytes, want: set[int] | None = None) -> Scan:
    """Walk the whole chain (raises DBAPIError if the table cannot be read)."""
    out = Scan()
    prev, expected = GENESIS, 1
    for mapping in conn.execute(_raw_select().order_by(audit_log.c.seq)).mappings():
        row = dict(mapping)
        seq = int(row["seq"])
        out.entries += 1
        found = _row_problem(conn, row, key, prev, expected)
        if found is not None:
            kind, message = found
            out.open.append(Problem(seq, kind, message, _ident(seq, kind, message, row)))
        elif row["action"] == ACKNOWLEDGE:
            named = set(_details(row).get("acknowledged") or ())
            out.acknowledged += [p for p in out.open if p.ident in named]
            out.open = [p for p in out.open if p.ident not in named]
        if want and seq in want:
            out.hashes[seq] = str(row["hash"])
        prev, expected = str(row["hash"]), seq + 1
        out.tail = Head(seq, prev)
    return out


# ---- verification -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: tuple[Problem, ...] = ()
    acknowledged: tuple[Problem, ...] = ()
    head_seq: int = 0
    external_head: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "problems": [p.to_dict() for p in self.problems],
            "acknowledged": [p.to_dict() for p in self.acknowledged],
            "head_seq": self.head_seq,
            "external_head": self.external_head,
            "checkpoint": self.checkpoint,
        }


def verify_chain(
    conn: Connection,
    key: bytes,
    external: ExternalState | None = None,
    checkpoint: Mapping[str, Any] | None = None,
) -> ChainStatus:
    """Every entry, both heads, and (given) a checkpoint. ``external`` must be read before the
    transaction of ``conn`` began: the file is written after commits, so it never runs ahead of a
    snapshot taken later. Malformed states are problems, never exceptions."""
    db = read_db_head(conn, key)
    want = {int(checkpoint["seq"])} if checkpoint is not None else set()
    if external is not None and external.head is not None:
        want.add(external.head.seq)
    problems: list[Problem] = []
    result = Scan()
    if not inspect(conn).has_table(audit_log.name):
        problems.append(Problem(None, "table", "the audit_log table is missing (dropped)"))
    else:
        try:
            result = scan(conn, key, want)
        except DBAPIError as exc:
            problems.append(Problem(None, "table", f"the audit_log table cannot be read: {exc.orig}"))
    problems += result.open
    ext_hash = result.hashes.get(external.head.seq) if external and external.head else None
    problems += head_problems(result.tail, db, external, ext_hash)
    cp_info = None
    if checkpoint is not None:
        cp_problem = checkpoint_problem(checkpoint, key, result.hashes.get(int(checkpoint["seq"])))
        cp_info = {"seq": checkpoint["seq"], "at": checkpoint["at"], "ok": cp_problem is None}
        if cp_problem:
            problems.append(cp_problem)
    problems.sort(key=lambda p: -1 if p.kind == "table" else float("inf") if p.seq is None else p.seq)
    ext_info = None
    if external is not None:
        ext_seq = external.head.seq if external.head else None
        behind = result.tail.seq - ext_seq if ext_seq is not None and ext_seq <= result.tail.seq else None
        ext_info = {"path": str(external.path), "state": external.state, "seq": ext_seq, "behind": behind}
    first = problems[0] if problems else None
    return ChainStatus(
        ok=not problems,
        entries=result.entries,
        first_bad_seq=first.seq if first else None,
        problem=first.message if first else None,
        problems=tuple(problems),
        acknowledged=tuple(result.acknowledged),
        head_seq=result.tail.seq,
        external_head=ext_info,
        checkpoint=cp_info,
    )


# ---- listing and export ------------------------------------------------------------------------------
def _row_out(conn: Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(row)
    try:
        d["at"] = as_utc(_parse_at(conn, d["at"])).isoformat()
        d["details"] = json.loads(d["details"])
    except (TypeError, ValueError, OverflowError):
        raise IntegrityError(
            f"audit entry #{d['seq']} is malformed (its time or details were changed after it was "
            "written): see `facevault audit verify`",
            code="audit_entry_malformed",
        ) from None
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
    q = _raw_select()
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
    try:
        return [_row_out(conn, r) for r in conn.execute(q).mappings()]
    except DBAPIError as exc:
        if _missing_table(exc):
            raise _unreadable(exc) from None
        raise


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
