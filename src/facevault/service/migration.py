"""Moving a collection to another model pack (``facevault collection migrate C --to PACK``): every
sample is re-embedded from its stored face crop (kept only where the collection's ``keep_crops`` is on,
see crops.py) by the new pack, and the collection is pinned to it.

The order of work:

1. Refusals, before anything changes: unknown or unloadable pack (integrity, license), the pack the
   collection already uses, a pack without score calibration, a collection that keeps no crops, samples
   without a crop.
2. Every crop is decrypted and re-embedded (no store write); any failure aborts with the sample ids.
3. ONE store transaction, under the index lock: every template replaced (sealed for the new model),
   the collection's model and dimension switched, an audit entry. It is refused if the collection
   changed meanwhile (samples enrolled, keys rotated, another migration).
4. The index is rebuilt for the new model and dimension. A crash before this leaves an index of the old
   model, which the index loader refuses and rebuilds from the store on next use (index/manager.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .. import calibration, crops, faults
from ..audit_events import CollectionMigrated
from ..errors import FaceVaultError, MigrationError
from ..models.registry import get_pack
from ..pipeline import run_in_worker, worker_count, worker_pool
from ..protection import TemplateKey
from ..reembed import CropJob, CropResult, embed_crop_job
from ..results import MigrationReport
from .collections import accepted_license, get_collection
from .context import Collection, ServiceContext

LISTED_IDS = 50  # sample ids named in a refusal's message (all of them are in its details)
CROPS_PER_READ = 200
# Worker processes cost a second or two to start and load the pack: not worth it for small collections.
MIN_CROPS_FOR_WORKERS = 200

Progress = Callable[[int, int], None]  # (samples re-embedded so far, samples in all)


def migrate_collection(
    ctx: ServiceContext,
    name: str,
    to_model_id: str,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Re-embed every sample of collection ``name`` with model pack ``to_model_id`` from its stored
    crop and pin the collection to that pack. Nothing changes when it is refused or fails.
    ``workers``: processes for re-embedding (default: the ``workers`` setting, one per core; a
    collection under ``MIN_CROPS_FOR_WORKERS`` samples is done in this process)."""
    coll = get_collection(ctx, name)
    source = coll["model_id"]
    target = (to_model_id or "").strip()
    if target == source:
        raise MigrationError(f"collection {name!r} already uses {target}", code="same_model")
    pack = get_pack(target)  # unknown, changed files or license not accepted: refused here
    calibration.for_model(target)  # collections need an honest threshold on the pack's scores
    if not coll["keep_crops"]:
        raise MigrationError(
            f"collection {name!r} keeps no face crops, so there is nothing to re-embed from: turn "
            "keep_crops on and enroll the photos again, or create a new collection with the pack",
            code="crops_not_kept",
        )
    with ctx.read() as conn:
        missing = ctx.store.samples_without_crop(conn, coll["id"])
        total = ctx.store.count_samples(conn, coll["id"])
    if missing:
        raise MigrationError(
            f"{len(missing)} of {total} samples of {name!r} have no stored crop (enrolled before "
            "keep_crops was on); re-enroll or erase them, then migrate: " + _listed(missing),
            code="crops_missing",
            sample_ids=missing,
        )

    key = ctx.current_key()
    if workers is None:
        workers = 1 if total < MIN_CROPS_FOR_WORKERS else worker_count(ctx.settings)
    vectors, fallback = reembed_collection(ctx, coll, target, key, max(1, workers), total, progress)
    faults.point("migrate:reembedded")
    new_coll = {**coll, "model_id": target, "dim": pack.dim}
    context = ctx.template_context(new_coll)
    accepted = accepted_license(ctx, target)
    with ctx.indexes.exclusive():
        with ctx.write() as conn:
            ctx.still_pinned(conn, coll)
            if int(ctx.store.get_meta(conn, "template_key_version") or 0) != key.version:
                raise MigrationError(
                    "the template keys were rotated while the collection was re-embedded; nothing was "
                    "changed, run the migration again",
                    code="collection_changed",
                )
            ids = ctx.store.sample_ids(conn, coll["id"])
            enrolled_meanwhile = sorted(ids - vectors.keys())
            if enrolled_meanwhile:
                raise MigrationError(
                    f"{len(enrolled_meanwhile)} samples were enrolled while the collection was "
                    "re-embedded; nothing was changed, run the migration again",
                    code="collection_changed",
                    sample_ids=enrolled_meanwhile,
                )
            for sid in sorted(ids):  # samples erased meanwhile are simply gone
                ctx.store.update_sample_template(
                    conn,
                    sid,
                    blob=key.seal(vectors[sid], context),
                    model_id=target,
                    key_version=key.version,
                )
            ctx.store.update_collection(conn, coll["id"], model_id=target, dim=pack.dim)
            moved = {
                "from_model": source,
                "to_model": target,
                "dim": pack.dim,
                "samples": len(ids),
                "located_by_fallback": len(fallback & ids),
            }
            event = CollectionMigrated(collection=name, license_acceptance=accepted, **moved)
            seq = ctx.log(conn, event)
            faults.point("migrate:before_commit")
        faults.point("migrate:db_committed")
        indexed = ctx.indexes.recreate(new_coll)
    with ctx.read() as conn:
        optout_models = sorted({r["model_id"] for r in ctx.store.optouts_for(conn, None, name)} - {target})
    return MigrationReport(
        collection=name, **moved, indexed=indexed, optout_models=optout_models, audit_seq=seq
    )


def reembed_collection(
    ctx: ServiceContext,
    coll: Collection,
    target: str,
    key: TemplateKey,
    workers: int,
    total: int,
    progress: Progress | None,
) -> tuple[dict[int, Any], set[int]]:
    """{sample id: embedding by ``target``, protected under ``key``} for every crop of the collection,
    and the ids whose face the detector did not find again (landmarks placed in the stored box).
    Crops are decrypted here (keys never leave this process) and embedded over ``workers``
    processes. Raises ``MigrationError`` naming every sample that could not be re-embedded."""
    vectors: dict[int, np.ndarray] = {}
    fallback: set[int] = set()
    failed: dict[int, str] = {}

    def pages() -> Iterator[list[CropJob]]:
        """The collection's crops, decrypted, a page at a time (never all of them in memory)."""
        last = 0
        while True:
            # One short read per page: re-embedding takes long, and no write waits for it meanwhile.
            with ctx.read() as conn:
                rows = ctx.store.crops_page(conn, coll["id"], last, CROPS_PER_READ)
            if not rows:
                return
            last = int(rows[-1]["sample_id"])
            page: list[CropJob] = []
            for row in rows:
                sid = int(row["sample_id"])
                try:
                    pixels = open_crop(ctx, row)
                except FaceVaultError as exc:  # a crop that does not open (tampered, moved) or decode
                    failed[sid] = exc.message
                    continue
                page.append((sid, pixels, (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"])))
            yield page

    def take(results: Iterable[CropResult]) -> None:
        for sid, embedding, detected, error in results:
            if error is not None or embedding is None:
                failed[sid] = error or "no embedding"
            else:
                vectors[sid] = key.protect(embedding)
                if not detected:
                    fallback.add(sid)
        if progress is not None:
            progress(len(vectors) + len(failed), total)

    if workers <= 1:
        pipe = ctx.pipeline(target)
        for page in pages():
            take(embed_crop_job(pipe, job) for job in page)
    else:
        with worker_pool(target, ctx.settings, workers) as pool:
            for page in pages():
                take(pool.map(run_in_worker, [(embed_crop_job, job) for job in page], chunksize=4))
    if failed:
        ids = sorted(failed)
        first = failed[ids[0]]
        raise MigrationError(
            f"{len(ids)} samples of {coll['name']!r} could not be re-embedded with {target} (first: "
            f"#{ids[0]}: {first}); nothing was changed: " + _listed(ids),
            code="reembed_failed",
            sample_ids=ids,
        )
    return vectors, fallback


def open_crop(ctx: ServiceContext, row: dict[str, Any]) -> np.ndarray:
    """The pixels of a stored crop row (decrypted under its key version)."""
    data = crops.open_sealed(
        ctx.keys.key(row["key_version"]), row["image"], row["collection_id"], row["sample_id"]
    )
    return crops.decode_crop(data)


def _listed(ids: list[int]) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:LISTED_IDS])
    return shown + (f" and {len(ids) - LISTED_IDS} more" if len(ids) > LISTED_IDS else "")
