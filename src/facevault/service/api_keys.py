"""API keys: created and revoked by an admin (CLI or API), stored as a SHA-256 of the secret.

A key looks like ``fvk_<prefix>_<secret>``. The prefix (8 hex digits) names the key in listings, logs
and the audit log (actor ``key:<prefix>``) without revealing it; only the hash of the whole key is kept,
so a stolen database does not give working keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update

from ..errors import ConflictError, InputError, NotFoundError
from ..store.database import as_utc, utcnow
from ..store.schema import api_keys

ROLES = ("admin", "enroller", "searcher", "reviewer", "auditor")
KEY_RE = re.compile(r"^fvk_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$")
# last_used_at is a convenience, not an audit record: write it at most this often per key.
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key."""

    key_id: int
    name: str
    role: str
    prefix: str

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "prefix": self.prefix, "actor": self.actor}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _row_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    out = {k: d[k] for k in ("name", "role", "prefix")}
    for k in ("created_at", "revoked_at", "last_used_at"):
        v = as_utc(d[k])
        out[k] = v.isoformat() if v else None
    out["active"] = d["revoked_at"] is None
    return out


def _audit(vault: Any, conn: Any, action: str, row: Any) -> None:
    """Record a key's creation or revocation in the vault's audit log, in the same transaction as the
    change itself (never the secret or its hash: prefix, role and name are enough to name a key)."""
    vault._log(conn, action, details={"prefix": row["prefix"], "role": row["role"], "name": row["name"]})


def log_login(vault: Any, principal: Principal) -> int:
    """Record one sign-in (the web UI calls this once per sign-in, not per request)."""
    with vault.store.begin() as conn:
        details = {"prefix": principal.prefix, "role": principal.role, "name": principal.name}
        return int(vault._log(conn, "login", details=details))


def role_counts(vault: Any) -> dict[str, int]:
    """Active keys per role: the "recipients" of the records of processing (GDPR Art. 30(1)(d))."""
    counts = dict.fromkeys(ROLES, 0)
    for k in list_keys(vault):
        if k["active"]:
            counts[k["role"]] = counts.get(k["role"], 0) + 1
    return counts


def create_key(vault: Any, role: str, name: str) -> tuple[str, dict[str, Any]]:
    """Create a key; returns (the secret, shown once, and its listing record). The creation is
    audited (action ``apikey.create``) as the vault's actor: the admin key over HTTP, the OS user in the
    CLI."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; roles: {', '.join(ROLES)}", code="invalid_role")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters")
    with vault.store.begin() as conn:
        for _ in range(5):
            prefix = secrets.token_hex(4)
            if conn.execute(select(api_keys.c.id).where(api_keys.c.prefix == prefix)).first() is None:
                break
        else:  # pragma: no cover - 5 collisions in a 32-bit space
            raise ConflictError("could not allocate a key prefix; try again")
        secret = f"fvk_{prefix}_{secrets.token_urlsafe(32)}"
        conn.execute(
            insert(api_keys).values(
                name=name, role=role, prefix=prefix, key_sha256=_hash(secret), created_at=utcnow()
            )
        )
        row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).mappings().one()
        _audit(vault, conn, "apikey.create", row)
    return secret, _row_dict(row)


def list_keys(vault: Any) -> list[dict[str, Any]]:
    with vault.store.begin() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).mappings().all()
    return [_row_dict(r) for r in rows]


def revoke_key(vault: Any, prefix: str) -> dict[str, Any]:
    """Revoke a key by its prefix (or the whole key); revoking twice is not an error (and is audited
    once, as ``apikey.revoke``)."""
    m = KEY_RE.match(prefix)
    if m:
        prefix = m.group(1)
    with vault.store.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).mappings().first()
        if row is None:
            raise NotFoundError(f"no API key with prefix {prefix!r}", code="key_not_found")
        if row["revoked_at"] is None:
            conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(revoked_at=utcnow()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == row["id"])).mappings().one()
            _audit(vault, conn, "apikey.revoke", row)
    return _row_dict(row)


def authenticate(vault: Any, key: str) -> Principal | None:
    """The active key matching ``key``, or None. Lookup is by hash, so timing reveals nothing about
    the secret."""
    if not KEY_RE.match(key):
        return None
    digest = _hash(key)
    with vault.store.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_sha256 == digest)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        now = utcnow()
        last = as_utc(row["last_used_at"])
        if last is None or now - last > _TOUCH_EVERY:
            conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(last_used_at=now))
    return Principal(key_id=row["id"], name=row["name"], role=row["role"], prefix=row["prefix"])
