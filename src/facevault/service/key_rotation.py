"""Template key rotation: every template, opt-out template and stored face crop re-protected under a new
key, then the old key forgotten.

Crash-safe: the new key is added to the key file first, every template and crop is re-protected in ONE
database transaction that also switches the current key version, and the old key is removed last.
Indexes are dropped before the switch (under the index lock) and rebuilt from the store, so no index can
hold vectors under a key the store no longer uses. A crash anywhere leaves the old or the new state; the
next open removes the unused key.
"""

from __future__ import annotations

from typing import Any

from .. import crops, faults
from ..audit_events import KeysRotated
from ..protection import TemplateKey
from ..results import KeyRotation
from . import library_snapshot
from .collections import list_collections
from .context import ServiceContext
from .library_cluster import crop_context, face_context
from .optout import open_optout, optout_context


def rotate_keys(ctx: ServiceContext) -> KeyRotation:
    ring = ctx.keys
    old = ctx.current_key()
    new = TemplateKey.generate(max(ring.template_keys) + 1)
    ring.template_keys[new.version] = new
    ring.save()
    faults.point("rotate:key_added")
    counts = {"samples": 0, "crops": 0, "optouts": 0, "library_faces": 0, "library_crops": 0}
    colls = {c["id"]: c for c in list_collections(ctx)}
    with ctx.indexes.exclusive():
        for c in colls.values():
            ctx.indexes.discard(c["id"])
        faults.point("rotate:indexes_dropped")
        with ctx.write() as conn:
            for rows in ctx.store.iter_sample_blobs(conn):
                for sid, cid, blob, version in rows:
                    coll = colls[cid]
                    key = ctx.keys.key(version)
                    raw = key.unprotect(ctx.open_template(coll, blob, version))
                    sealed = new.seal(new.protect(raw), ctx.template_context(coll))
                    ctx.store.update_sample_blob(conn, sid, sealed, new.version)
                    counts["samples"] += 1
            for crop_rows in ctx.store.iter_crops(conn):  # crops: decrypted and sealed again
                for r in crop_rows:
                    sid, cid = r["sample_id"], r["collection_id"]
                    data = crops.open_sealed(ctx.keys.key(r["key_version"]), r["image"], cid, sid)
                    ctx.store.update_crop_blob(conn, sid, crops.seal(new, data, cid, sid), new.version)
                    counts["crops"] += 1
            for r in ctx.store.all_optouts(conn):
                sealed = new.seal(new.protect(open_optout(ctx, r)), optout_context(r))
                ctx.store.update_optout_blob(conn, r["id"], sealed, new.version)
                counts["optouts"] += 1
            faces, crops_done = reseal_libraries(ctx, conn, new)
            counts["library_faces"] += faces
            counts["library_crops"] += crops_done
            ctx.store.set_meta(conn, "template_key_version", str(new.version))
            ctx.log(conn, KeysRotated(from_version=old.version, to_version=new.version, **counts))
            faults.point("rotate:before_commit")
        faults.point("rotate:db_committed")
    forget_unused_keys(ctx)
    library_snapshot.sweep(ctx)  # library vectors on disk in the old key's space
    for c in colls.values():
        ctx.indexes.get(c)  # rebuild now rather than on the first search
    return KeyRotation(from_version=old.version, to_version=new.version, **counts)


def reseal_libraries(ctx: ServiceContext, conn: Any, new: TemplateKey) -> tuple[int, int]:
    """Every photo library's face templates and crops sealed again under ``new``, in the rotation's
    transaction (a library face under a forgotten key could never be read again)."""
    faces = crop_count = 0
    for lib in ctx.store.list_libraries(conn):
        ad = face_context(lib)
        pages = list(ctx.store.library_face_blobs(conn, lib["id"], 0))  # read all before writing
        for rows in pages:
            for face_id, blob, version in rows:
                old = ctx.keys.key(version)
                raw = old.unprotect(old.open(blob, ad, lib["dim"]))
                ctx.store.set_library_face_blob(conn, face_id, new.seal(new.protect(raw), ad), new.version)
                faces += 1
        for face_id in ctx.store.library_crop_ids(conn, lib["id"]):
            row = ctx.store.library_crop(conn, face_id)
            if row is None:
                continue
            where = crop_context(lib["id"], face_id)
            old_key = ctx.keys.key(row["key_version"])
            data = old_key.decrypt(row["image"], where, f"the crop of face #{face_id}")
            ctx.store.set_library_crop_blob(conn, face_id, new.encrypt(data, where), new.version)
            crop_count += 1
    return faces, crop_count


def forget_unused_keys(ctx: ServiceContext) -> list[int]:
    """Drop template keys the store no longer uses (left behind by an interrupted rotation)."""
    ring = ctx.keys
    if ring.from_env or len(ring.template_keys) <= 1:
        return []
    with ctx.read() as conn:
        current = int(ctx.store.get_meta(conn, "template_key_version") or 1)
    stale = [v for v in ring.template_keys if v != current]
    if stale and current in ring.template_keys:
        for v in stale:
            del ring.template_keys[v]
        ring.save()
    return stale
