"""The two heads of the audit chain and the checkpoints that pin it from outside.

- ``DbHead``: the last sequence number and hash, MACed, in ``vault_meta``, written in the same transaction
  as the entry; it also says whether the head file below is expected to exist.
- ``ExternalHead``: the same in a file outside the database, next to the keys by default, written after
  the commit (atomically, under an flock, never backwards).
- checkpoints: a signed "the log had entry #seq with this hash at this time", to keep elsewhere.

``head_problems`` compares both heads with where the log really ends; ``checkpoint_problem`` says whether
the log still extends a checkpoint. Every state a file or record can be in is an answer, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import DBAPIError

from ..clock import utcnow
from ..errors import InputError
from ..protection import locked, write_private_file
from ..store.schema import meta

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
HEAD_FORMAT = "facevault-audit-head-1"
CHECKPOINT_FORMAT = "facevault-audit-checkpoint-1"


def mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def same(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


EMPTY = Head(0, GENESIS)


# ---- the head record in the database ---------------------------------------------------------------------
@dataclass(frozen=True)
class DbHead:
    state: str  # "absent" | "invalid" | "ok"
    head: Head | None = None
    external: bool = False  # the head file outside the database is expected to exist


def _db_head_mac(key: bytes, head: Head, external: bool) -> str:
    return mac(key, f"head2:{head.seq}:{head.hash}:{int(external)}")


def read_db_head(conn: Connection, key: bytes) -> DbHead:
    try:
        raw = conn.execute(select(meta.c.value).where(meta.c.key == HEAD_KEY)).scalar()
    except DBAPIError:
        return DbHead("invalid")
    if raw is None:
        return DbHead("absent")
    try:
        data = json.loads(raw)
        head = Head(int(data["seq"]), str(data["hash"]))
        if data.get("v") == 2:  # written by this code: says whether the external head file exists
            external = data["external"] is True
            ok = same(_db_head_mac(key, head, external), data["mac"])
        else:  # a vault from before the external head (no file yet)
            external = False
            ok = same(mac(key, f"head:{head.seq}:{head.hash}"), data["mac"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return DbHead("invalid")
    return DbHead("ok", head, external) if ok else DbHead("invalid")


def write_db_head(conn: Connection, head: Head, key: bytes, external: bool) -> None:
    value = json.dumps(
        {"v": 2, **head.to_dict(), "external": external, "mac": _db_head_mac(key, head, external)}
    )
    if conn.execute(select(meta.c.key).where(meta.c.key == HEAD_KEY)).first():
        conn.execute(update(meta).where(meta.c.key == HEAD_KEY).values(value=value))
    else:
        conn.execute(insert(meta).values(key=HEAD_KEY, value=value))


# ---- the head kept outside the database -------------------------------------------------------------------
@dataclass(frozen=True)
class ExternalState:
    path: Path
    state: str  # "absent" | "invalid" | "ok"
    head: Head | None = None
    why: str = ""


class ExternalHead:
    """The chain head in a file next to the keys: replaced atomically, under an flock, and only by a
    higher sequence number (two processes finishing in the other order cannot move it backwards)."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key

    def _sign(self, head: Head, at: str) -> str:
        return mac(self._key, f"external-head:{head.seq}:{head.hash}:{at}")

    def read(self) -> ExternalState:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ExternalState(self.path, "absent")
        except (OSError, UnicodeDecodeError) as exc:
            return ExternalState(self.path, "invalid", why=f"cannot read it ({type(exc).__name__})")
        try:
            data = json.loads(raw)
            if data.get("format") != HEAD_FORMAT:
                raise ValueError("not a facevault audit head")
            head = Head(int(data["seq"]), str(data["hash"]))
            ok = same(self._sign(head, str(data["at"])), data["mac"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return ExternalState(self.path, "invalid", why="it is not a facevault audit head")
        if not ok:
            return ExternalState(self.path, "invalid", why="its MAC does not match this vault's audit key")
        return ExternalState(self.path, "ok", head)

    def advance(self, head: Head) -> bool:
        """Write ``head`` unless the file already holds this or a later entry; True if written."""
        with locked(self.path.with_name(self.path.name + ".lock")):
            now = self.read()
            if now.head is not None and now.head.seq >= head.seq:
                return False
            at = utcnow().isoformat()
            body = {"format": HEAD_FORMAT, **head.to_dict(), "at": at, "mac": self._sign(head, at)}
            write_private_file(self.path, json.dumps(body) + "\n")
            return True


# ---- problems --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing verification found. ``ident`` names a problem of one entry for acknowledgement: it
    covers the entry's stored content, so changing that entry again is a new, unacknowledged problem."""

    seq: int | None
    kind: str  # malformed | gap | link | changed | chain_break | table | head | external | checkpoint
    message: str
    ident: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


def head_problems(tail: Head, db: DbHead, ext: ExternalState | None, ext_hash: str | None) -> list[Problem]:
    """Whether the log ends where the head record and the head file say; ``ext_hash`` is the stored
    hash of the entry the head file names (None if there is no such entry)."""
    out: list[Problem] = []
    if db.state == "invalid":
        out.append(Problem(None, "head", "the chain head record in the database is unreadable or altered"))
    elif db.state == "absent" and tail.seq:
        out.append(Problem(None, "head", "the chain head record in the database is missing"))
    elif db.head is not None and db.head != tail:
        if db.head.seq > tail.seq:
            msg = f"entries after #{tail.seq} were removed (the log ended at #{db.head.seq})"
            out.append(Problem(tail.seq + 1, "head", msg))
        else:
            msg = f"the chain head record names entry #{db.head.seq}, but the log ends at #{tail.seq}"
            out.append(
                Problem(min(db.head.seq + 1, tail.seq), "head", msg + " (an old head record put back?)")
            )
    if ext is None:
        return out
    where = f"the chain head kept outside the database ({ext.path})"
    if ext.state == "invalid":
        out.append(Problem(None, "external", f"{where} is unreadable or altered: {ext.why}"))
    elif ext.state == "absent" and db.external:
        out.append(Problem(None, "external", f"{where} is missing"))
    elif ext.head is not None and ext.head.seq > tail.seq:
        msg = f"{where} names entry #{ext.head.seq}, but the log ends at #{tail.seq}"
        out.append(Problem(tail.seq + 1, "external", msg + ": entries were cut or the database rolled back"))
    elif ext.head is not None and ext.head.seq and not same(ext_hash, ext.head.hash):
        msg = f"entry #{ext.head.seq} is not the one {where} names: the log was rewritten or rolled back"
        out.append(Problem(ext.head.seq, "external", msg))
    return out


# ---- checkpoints -------------------------------------------------------------------------------------------
def _checkpoint_mac(key: bytes, seq: int, digest: str, at: str) -> str:
    return mac(key, f"checkpoint:{seq}:{digest}:{at}")


def make_checkpoint(head: Head, key: bytes) -> dict[str, Any]:
    """A signed statement "the log had entry #seq with this hash at this time", to keep elsewhere."""
    at = utcnow().isoformat()
    signature = _checkpoint_mac(key, head.seq, head.hash, at)
    return {"format": CHECKPOINT_FORMAT, **head.to_dict(), "at": at, "mac": signature}


def parse_checkpoint(data: Any) -> dict[str, Any]:
    """The fields of a checkpoint (not yet its MAC, which verification checks); InputError if it has
    not the shape of one."""
    try:
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError
        out = {
            "seq": int(data["seq"]),
            "hash": str(data["hash"]),
            "at": str(data["at"]),
            "mac": str(data["mac"]),
        }
    except (AttributeError, KeyError, TypeError, ValueError):
        raise InputError(
            "not a facevault audit checkpoint (make one with `facevault audit checkpoint`)",
            code="invalid_checkpoint",
        ) from None
    if out["seq"] < 1:
        raise InputError("a checkpoint names an entry #1 or later", code="invalid_checkpoint")
    return out


def checkpoint_problem(cp: Mapping[str, Any], key: bytes, stored: str | None) -> Problem | None:
    seq = int(cp["seq"])
    if not same(_checkpoint_mac(key, seq, cp["hash"], cp["at"]), cp["mac"]):
        msg = "the checkpoint's MAC does not match this vault's audit key (altered, or another vault's)"
        return Problem(seq, "checkpoint", msg)
    if stored is None:
        msg = f"entry #{seq} of the checkpoint of {cp['at']} is gone: the log was cut or rolled back since"
        return Problem(seq, "checkpoint", msg)
    if not same(stored, cp["hash"]):
        msg = f"entry #{seq} is not the one the checkpoint of {cp['at']} names: the log was rewritten"
        return Problem(seq, "checkpoint", msg)
    return None
