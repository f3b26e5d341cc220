"""API keys: created and revoked by an admin (CLI or API), stored as a SHA-256 of the secret.

A key looks like ``fvk_<prefix>_<secret>``. The prefix (8 hex digits) names the key in listings, logs
and the audit log (actor ``key:<prefix>``) without revealing it; only the hash of the whole key is kept,
so a stolen database does not give working keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..audit_events import ApiKeyCreated, ApiKeyRevoked, SignedIn
from ..clock import as_utc, iso, utcnow
from ..config import ROLES
from ..errors import ConflictError, InputError, NotFoundError
from ..results import ApiKeyInfo, Principal
from ..store import compat_queries
from ..store.schema import api_keys
from .context import ServiceContext

KEY_RE = re.compile(r"^fvk_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$")
# last_used_at is a convenience, not an audit record: write it at most this often per key.
_TOUCH_EVERY = timedelta(seconds=60)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _row_dict(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        name=row["name"],
        role=row["role"],
        prefix=row["prefix"],
        created_at=iso(row["created_at"]),
        revoked_at=iso(row["revoked_at"]),
        last_used_at=iso(row["last_used_at"]),
        active=row["revoked_at"] is None,
    )


def key_info(row: Any) -> ApiKeyInfo:
    """A key row as listed (never its secret or hash)."""
    return _row_dict(row)


def _named(row: Any) -> dict[str, str]:
    """What names a key in the audit log: never the secret or its hash."""
    return {"prefix": row["prefix"], "role": row["role"], "name": row["name"]}


def log_login(ctx: ServiceContext, principal: Principal) -> int:
    """Record one sign-in (the web UI calls this once per sign-in, not per request)."""
    with ctx.write() as conn:
        return ctx.log(conn, SignedIn(prefix=principal.prefix, role=principal.role, name=principal.name))


def role_counts(ctx: ServiceContext) -> dict[str, int]:
    """Active keys per role: the "recipients" of the records of processing (GDPR Art. 30(1)(d))."""
    counts = dict.fromkeys(ROLES, 0)
    for k in list_keys(ctx):
        if k["active"]:
            counts[k["role"]] = counts.get(k["role"], 0) + 1
    return counts


def create_key(ctx: ServiceContext, role: str, name: str) -> tuple[str, ApiKeyInfo]:
    """Create a key; returns (the secret, shown once, and its listing record). The creation is audited
    in the same transaction, as the acting identity: the admin key over HTTP, the OS user in the CLI."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; roles: {', '.join(ROLES)}", code="invalid_role")
    with ctx.write() as conn:
        secret, row = insert_key(ctx, conn, role, name)
    return secret, _row_dict(row)


def insert_key(ctx: ServiceContext, conn: Connection, role: str, name: str) -> tuple[str, Any]:
    """A new key row (and its audit entry) in the caller's write transaction: (secret, row)."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters")
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
    ctx.log(conn, ApiKeyCreated(**_named(row)))
    return secret, row


def list_keys(ctx: ServiceContext) -> list[ApiKeyInfo]:
    with ctx.read() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).mappings().all()
    return [_row_dict(r) for r in rows]


def revoke_key(ctx: ServiceContext, prefix: str) -> ApiKeyInfo:
    """Revoke a key by its prefix (or the whole key); revoking twice is not an error (and is audited
    once)."""
    m = KEY_RE.match(prefix)
    if m:
        prefix = m.group(1)
    with ctx.write() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).mappings().first()
        if row is None:
            raise NotFoundError(f"no API key with prefix {prefix!r}", code="key_not_found")
        if row["revoked_at"] is None:
            conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(revoked_at=utcnow()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == row["id"])).mappings().one()
            ctx.log(conn, ApiKeyRevoked(**_named(row)))
    return _row_dict(row)


def authenticate(ctx: ServiceContext, key: str) -> Principal | None:
    """The active key matching ``key``, or None. Lookup is by hash, so timing reveals nothing about the
    secret. Reads only, except for a ``last_used_at`` touch at most once a minute per key. A
    compatibility key (service/compat_keys.py) is not a key of facevault's own API: None."""
    found = active_key(ctx, key)
    if found is None or found[1]:
        return None
    row = found[0]
    return Principal(key_id=row["id"], name=row["name"], role=row["role"], prefix=row["prefix"])


def active_key(ctx: ServiceContext, key: str) -> tuple[Any, dict[str, Any] | None] | None:
    """(the active key row matching ``key``, its compatibility binding or None), or None."""
    if not KEY_RE.match(key):
        return None
    digest = _hash(key)
    with ctx.read() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_sha256 == digest)).mappings().first()
        binding = None if row is None else compat_queries.binding_for(conn, row["id"])
    if row is None or row["revoked_at"] is not None:
        return None
    now = utcnow()
    last = as_utc(row["last_used_at"])
    if last is None or now - last > _TOUCH_EVERY:
        with ctx.write() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(last_used_at=now))
    return row, binding
