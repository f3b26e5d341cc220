"""Compatibility API keys: keys that speak another server's protocol (CompreFace's, api/compreface/),
each bound to one collection, one service type, the roles it acts in and a fixed purpose (and case).

CompreFace's clients send no purpose and no case: the binding supplies them, so every search and
verification made with such a key is audited under the purpose an admin wrote down when creating it,
with the key as actor. A compatibility key cannot be used on facevault's own API (``authenticate``
refuses it): it has no powers beyond its binding.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audit_events import CompatKeyBound
from ..clock import utcnow
from ..errors import InputError
from ..results import ApiKeyInfo, Record
from ..store import compat_queries
from .api_keys import active_key, insert_key, key_info
from .context import ServiceContext

PROTOCOLS = ("compreface",)
SERVICES = ("recognition", "detection", "verification")
COMPAT_ROLE = "compat"  # the api_keys.role of every compatibility key: not a role of the native API
COMPAT_ROLES = ("admin", "enroller", "searcher")
# What a key of each service type may do unless told otherwise: a CompreFace recognition key manages
# and searches its face collection (Double Take needs both); wiping a collection needs --role admin.
DEFAULT_ROLES = {
    "recognition": ("enroller", "searcher"),
    "detection": ("searcher",),
    "verification": ("searcher",),
}
MAX_PURPOSE = 500


@dataclass(frozen=True)
class CompatPrincipal:
    """Who is calling the compatibility surface: one key and its binding."""

    key_id: int
    name: str
    prefix: str
    protocol: str
    service: str
    roles: tuple[str, ...]
    purpose: str
    case_id: str | None
    collection: str | None  # its name now; None when unbound, or when the collection is gone
    collection_id: int | None

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}"

    def may(self, role: str) -> bool:
        """Whether the key may act in ``role`` (an admin key may act in every role)."""
        return "admin" in self.roles or role in self.roles


@dataclass(eq=False)
class CompatKeyInfo(Record):
    """A new compatibility key as listed, with its binding (never its secret or hash)."""

    key: ApiKeyInfo
    protocol: str
    service: str
    collection: str | None
    roles: list[str]
    purpose: str
    case_id: str | None

    def to_dict(self) -> dict[str, object]:
        binding = {k: v for k, v in super().to_dict().items() if k != "key"}
        return {**self.key.to_dict(), "compat": binding}


def parse_roles(service: str, roles: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The roles of a new compatibility key: given (comma-separated or a list), or the service's."""
    if roles is None or roles == "" or roles == []:
        return DEFAULT_ROLES[service]
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    out = tuple(r for r in COMPAT_ROLES if r in {i.strip() for i in items})
    unknown = {i.strip() for i in items} - set(COMPAT_ROLES)
    if unknown or not out:
        raise InputError(
            f"a compatibility key's roles are {', '.join(COMPAT_ROLES)}; got {sorted(unknown) or items}",
            code="invalid_role",
        )
    return out


def create_compat_key(
    ctx: ServiceContext,
    *,
    name: str,
    protocol: str,
    service: str,
    collection: str | None,
    purpose: str,
    case_id: str | None = None,
    roles: str | list[str] | tuple[str, ...] | None = None,
) -> tuple[str, CompatKeyInfo]:
    """Create a compatibility key and its binding in one audited transaction; returns (its secret,
    shown once, and its record)."""
    if protocol not in PROTOCOLS:
        raise InputError(
            f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}", code="invalid_input"
        )
    if service not in SERVICES:
        raise InputError(
            f"unknown service {service!r}; services: {', '.join(SERVICES)}", code="invalid_input"
        )
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > MAX_PURPOSE:
        raise InputError(
            "a compatibility key needs a purpose (1 to 500 characters): its searches are audited under it",
            code="purpose_required",
        )
    case_id = (case_id or "").strip() or None
    if case_id is not None and len(case_id) > 200:
        raise InputError("a case id has at most 200 characters", code="invalid_input")
    if service == "recognition" and not collection:
        raise InputError(
            "a recognition key is bound to one collection: give --collection", code="invalid_input"
        )
    chosen = parse_roles(service, roles)
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection) if collection else None
        secret, row = insert_key(ctx, conn, COMPAT_ROLE, name)
        compat_queries.add_binding(
            conn,
            api_key_id=row["id"],
            protocol=protocol,
            service=service,
            collection_id=None if coll is None else coll["id"],
            roles=",".join(chosen),
            purpose=purpose,
            case_id=case_id,
            created_at=utcnow(),
        )
        ctx.log(
            conn,
            CompatKeyBound(
                purpose=purpose,
                case_id=case_id,
                collection=collection or None,
                prefix=row["prefix"],
                protocol=protocol,
                service=service,
                roles=list(chosen),
            ),
        )
    return secret, CompatKeyInfo(
        key=key_info(row),
        protocol=protocol,
        service=service,
        collection=collection or None,
        roles=list(chosen),
        purpose=purpose,
        case_id=case_id,
    )


def authenticate_compat(ctx: ServiceContext, key: str) -> CompatPrincipal | None:
    """The active compatibility key matching ``key`` with its binding, or None (also for keys of the
    native API: they carry no purpose to audit a CompreFace call under)."""
    found = active_key(ctx, key)
    if found is None or found[1] is None:
        return None
    row, binding = found
    name = None
    if binding["collection_id"] is not None:
        with ctx.read() as conn:
            coll = ctx.store.collection_by_id(conn, binding["collection_id"])
        name = None if coll is None else coll["name"]
    return CompatPrincipal(
        key_id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        protocol=binding["protocol"],
        service=binding["service"],
        roles=tuple(r for r in binding["roles"].split(",") if r),
        purpose=binding["purpose"],
        case_id=binding["case_id"],
        collection=name,
        collection_id=binding["collection_id"],
    )
