"""Collections: a gallery pinned to one model pack, with its purpose, legal basis, retention period and
whether it keeps encrypted face crops; and the administration of its vector index."""

from __future__ import annotations

import shutil
import unicodedata
from typing import Any

from .. import calibration
from ..audit_events import CollectionCreated, CollectionDeleted, DetectorSet, KeepCropsSet, RetentionSet
from ..config import DEFAULT_RETENTION_DAYS, check_retention_days, models_dir_setting
from ..errors import InputError
from ..models.detectors import with_detector
from ..models.registry import get_pack, license_acceptance
from ..results import (
    CollectionDeletion,
    CollectionInfo,
    DetectorChanged,
    IndexRebuilt,
    KeepCropsChanged,
    RetentionChanged,
)
from .context import ServiceContext

# One rule for every name that ends up in a URL path or a file name (collections, subjects), whichever
# edge it came from: the HTTP API, the CLI, a batch manifest or the Python API.
MAX_NAME_LENGTH = 200
_FORBIDDEN_IN_NAMES = "/\\"
_JOINERS = "\u200c\u200d"  # zero-width (non-)joiners: invisible, but part of correctly written names


def check_name(name: str | None, what: str = "collection") -> str:
    """``name`` without surrounding blanks, if it can be addressed everywhere: 1 to ``MAX_NAME_LENGTH``
    characters, no ``/`` or ``\\`` (a URL path segment or a file name could not hold it), not ``.`` or
    ``..`` (clients collapse them out of URLs), no control or invisible format characters. Letters of
    every script, spaces and punctuation such as ``'`` or ``-`` are fine: people's names have them."""
    clean = (name or "").strip()
    if not clean:
        raise InputError(f"{what} name must not be empty", code="invalid_name")
    if len(clean) > MAX_NAME_LENGTH:
        raise InputError(
            f"{what} name has {len(clean)} characters; at most {MAX_NAME_LENGTH} are allowed",
            code="invalid_name",
        )
    if clean in (".", ".."):
        raise InputError(f"{what} name {clean!r} cannot be used in a URL", code="invalid_name")
    bad = sorted(
        {
            ch
            for ch in clean
            if ch in _FORBIDDEN_IN_NAMES or (unicodedata.category(ch)[0] == "C" and ch not in _JOINERS)
        }
    )
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        raise InputError(
            f"{what} name may not contain {shown} (slashes, control or invisible characters)",
            code="invalid_name",
        )
    return clean


def create_collection(
    ctx: ServiceContext,
    name: str,
    model: str | None = None,
    *,
    purpose: str | None = None,
    legal_basis: str | None = None,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    keep_crops: bool = False,
    detector: str | None = None,
) -> CollectionInfo:
    """A collection pinned to ``model``. ``keep_crops``: keep an encrypted face crop of every enrolled
    sample, so the collection can later move to another model pack (``migrate_collection``).
    ``detector``: find its faces with another detector than the pack's own (default: the ``detector``
    setting); the vectors stay the pack's (``models.detectors``)."""
    name = check_name(name, "collection")
    model_id = model or ctx.settings.default_model
    pack = get_pack(model_id)
    chosen = usable_detector(ctx, model_id, detector or ctx.settings.detector or None)
    calibration.for_model(model_id)  # refuse models we cannot put an honest threshold on
    check_retention_days(retention_days)
    accepted = accepted_license(ctx, model_id)  # the vault's own, tamper-evident record of who accepted what
    with ctx.write() as conn:
        row = ctx.store.create_collection(
            conn,
            name,
            model_id,
            pack.dim,
            purpose=purpose,
            legal_basis=legal_basis,
            retention_days=retention_days,
            keep_crops=bool(keep_crops),
        )
        if chosen:
            ctx.store.update_collection(conn, row["id"], detector=chosen)
            row = {**row, "detector": chosen}
        ctx.log(
            conn,
            CollectionCreated(
                collection=name,
                model_id=model_id,
                keep_crops=bool(keep_crops),
                detector=chosen,
                license_acceptance=accepted,
            ),
        )
    return CollectionInfo.from_row(row)


def usable_detector(ctx: ServiceContext, model_id: str, detector: str | None) -> str | None:
    """``detector`` if ``model_id``'s pack can use it (None, or the pack's own: None), else a
    ConfigError saying why (unknown, not installed, failed its check, landmarks the pack cannot use)."""
    if not detector:
        return None
    pack = get_pack(model_id)
    if detector == pack.detector.name:
        return None
    with_detector(pack, detector, models_dir_setting(ctx.settings.home))
    return detector


def set_detector(ctx: ServiceContext, collection: str, detector: str | None) -> DetectorChanged:
    """Find this collection's faces with ``detector`` from now on (None: the pack's own). Stored vectors
    stay valid: only boxes come from the detector, the alignment and the network stay the pack's."""
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        chosen = usable_detector(ctx, coll["model_id"], detector)
        ctx.store.update_collection(conn, coll["id"], detector=chosen)
        ctx.log(conn, DetectorSet(collection=collection, detector=chosen))
    return DetectorChanged(collection=collection, detector=chosen or get_pack(coll["model_id"]).detector.name)


def accepted_license(ctx: ServiceContext, model_id: str) -> dict[str, Any] | None:
    """The license acceptance record of a non-commercial pack (None for the others)."""
    return license_acceptance(model_id, models_dir_setting(ctx.settings.home))


def list_collections(ctx: ServiceContext) -> list[dict[str, Any]]:
    """Store rows with their counts (the service's own view; ``Vault`` wraps them in CollectionInfo)."""
    with ctx.read() as conn:
        return ctx.store.list_collections(conn)


def get_collection(ctx: ServiceContext, name: str) -> dict[str, Any]:
    """The store row (the service's own view; ``Vault`` wraps it in CollectionInfo)."""
    with ctx.read() as conn:
        return ctx.store.get_collection(conn, name)


def delete_collection(ctx: ServiceContext, name: str) -> CollectionDeletion:
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, name)
        counts = ctx.store.delete_collection(conn, coll["id"])
        ctx.log(conn, CollectionDeleted(collection=name, counts=counts))
    ctx.indexes.discard(coll["id"])
    shutil.rmtree(ctx.settings.collection_photos_dir(coll["id"]), ignore_errors=True)
    ctx.store.checkpoint()
    return CollectionDeletion(**counts)


def set_retention(ctx: ServiceContext, collection: str, days: int) -> RetentionChanged:
    days = check_retention_days(days)
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        ctx.store.update_collection(conn, coll["id"], retention_days=days)
        ctx.log(conn, RetentionSet(collection=collection, retention_days=days))
    return RetentionChanged(collection=collection, retention_days=days)


def set_keep_crops(ctx: ServiceContext, collection: str, keep: bool) -> KeepCropsChanged:
    """Turn keeping encrypted face crops (the source for ``migrate_collection``) on or off. Turning it off
    deletes every crop the collection holds, at once and audited; turning it on applies to samples
    enrolled from then on."""
    keep = bool(keep)
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        ctx.store.update_collection(conn, coll["id"], keep_crops=keep)
        deleted = 0 if keep else ctx.store.delete_collection_crops(conn, coll["id"])
        ctx.log(conn, KeepCropsSet(collection=collection, keep_crops=keep, crops_deleted=deleted))
    if deleted:
        ctx.store.checkpoint()  # the deleted crops' pages leave the WAL too (see erasure)
    return KeepCropsChanged(collection=collection, keep_crops=keep, crops_deleted=deleted)


# ---- the collection's index ----------------------------------------------------------------------------
def index_info(ctx: ServiceContext, collection: str) -> dict[str, Any]:
    coll = get_collection(ctx, collection)
    return {**ctx.indexes.info(coll), "collection": collection, "backend": ctx.indexes.spec}


def index_rebuild(ctx: ServiceContext, collection: str) -> IndexRebuilt:
    """Rebuild a collection's index from the store (the store is the truth)."""
    coll = get_collection(ctx, collection)
    return IndexRebuilt(collection=collection, indexed=ctx.indexes.rebuild(coll))


def index_tune(ctx: ServiceContext, collection: str, **values: Any) -> dict[str, Any]:
    """Change search-time or build settings of a collection's index (saved with it)."""
    coll = get_collection(ctx, collection)
    return {"collection": collection, **ctx.indexes.tune(coll, **values)}
