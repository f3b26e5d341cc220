"""Face-collection administration in CompreFace's terms (api/compreface/): faces (samples) listed page
by page, samples erased while their subject and consent record stay, subjects renamed, every subject of
a collection erased.

A sample erasure follows the subject erasure's rules (service/erasure.py): one store transaction with a
receipt per subject in the audit log (``samples.erase``: ids, counts and image hashes) and a pending
erasure record, then the index entries and the kept photo copies, then the pending record cleared; an
erasure a crash interrupted is finished at the next open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import faults
from ..audit_events import SamplesErased, SubjectRenamed
from ..errors import ConflictError, InputError
from ..results import ErasureReceipt, Record
from ..store import compat_queries
from .collections import check_name
from .context import ServiceContext
from .erasure import erase_subject
from .photos import remove_copies

MAX_PAGE_SIZE = 1000


@dataclass(eq=False)
class FaceRef(Record):
    sample_id: int
    subject_id: int
    name: str


@dataclass(eq=False)
class FacesPage(Record):
    faces: list[FaceRef]
    page: int
    size: int
    total: int


@dataclass(eq=False)
class SamplesReceipt(Record):
    """What a sample erasure removed from one subject (also its audit entry): no biometric data."""

    collection: str
    subject_id: int
    name: str
    reason: str
    sample_ids: list[int]
    crops_erased: int
    images_erased: int
    image_sha256: list[str]
    audit_seq: int
    photos_removed: int = 0


def list_faces(ctx: ServiceContext, collection: str, subject: str | None, page: int, size: int) -> FacesPage:
    """One page (from 0) of ``size`` samples of a collection, or of one subject (a subject reference)."""
    if page < 0 or not 1 <= size <= MAX_PAGE_SIZE:
        raise InputError(f"page must be >= 0 and size 1 to {MAX_PAGE_SIZE}", code="invalid_input")
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        sid = None if subject is None else ctx.store.find_subject(conn, coll["id"], subject)["id"]
        rows, total = compat_queries.faces_page(conn, coll["id"], sid, page * size, size)
    faces = [FaceRef(sample_id=r["sample_id"], subject_id=r["subject_id"], name=r["name"]) for r in rows]
    return FacesPage(faces=faces, page=page, size=size, total=total)


def erase_samples(
    ctx: ServiceContext,
    collection: str,
    *,
    subject: str | None = None,
    sample_ids: Sequence[int] | None = None,
    everything: bool = False,
    reason: str = "deleted",
) -> list[SamplesReceipt]:
    """Erase samples, keeping their subjects and consent records: every sample of ``subject``, the
    given ``sample_ids`` of this collection (ids of other collections or unknown ones are skipped), or
    with ``everything`` every sample of the collection. One receipt per subject touched."""
    if sum((subject is not None, sample_ids is not None, everything)) != 1:
        raise InputError("name a subject, sample ids, or everything", code="invalid_input")
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
    done: list[tuple[dict[str, Any], str, int]] = []  # (receipt, subject name, audit seq)
    pending: list[int] = []
    with ctx.indexes.committing(coll) as change:
        with ctx.write() as conn:
            coll = ctx.store.get_collection(conn, collection)
            rows = _targets(ctx, conn, coll, subject, sample_ids)
            by_subject: dict[int, list[int]] = {}
            for r in rows:
                by_subject.setdefault(int(r["subject_id"]), []).append(int(r["sample_id"]))
            for sid, ids in sorted(by_subject.items()):
                subj = ctx.store.find_subject(conn, coll["id"], f"#{sid}")
                gone = compat_queries.delete_samples(conn, ids)
                pending.append(
                    ctx.store.add_pending_erasure(conn, coll["id"], sid, ids, gone["image_sha256"])
                )
                receipt = {
                    "subject_id": sid,
                    "reason": reason,
                    "sample_ids": sorted(ids),
                    "crops_erased": gone["crops"],
                    "images_erased": len(gone["image_sha256"]),
                    "image_sha256": gone["image_sha256"],
                }
                seq = ctx.log(conn, SamplesErased(collection=collection, receipt=receipt))
                done.append((receipt, subj["name"], seq))
            faults.point("erase:before_commit")
        faults.point("erase:db_committed")
        change.remove([i for ids in by_subject.values() for i in ids])
    faults.point("erase:index_updated")
    receipts = [
        SamplesReceipt(
            collection=collection,
            name=name,
            audit_seq=seq,
            photos_removed=remove_copies(ctx.settings, coll["id"], receipt["image_sha256"]),
            **receipt,
        )
        for receipt, name, seq in done
    ]
    with ctx.write() as conn:
        for pid in pending:
            ctx.store.clear_pending_erasure(conn, pid)
    if receipts:
        ctx.store.checkpoint()
    return receipts


def _targets(
    ctx: ServiceContext,
    conn: Any,
    coll: dict[str, Any],
    subject: str | None,
    sample_ids: Sequence[int] | None,
) -> list[dict[str, Any]]:
    if subject is not None:
        sid = ctx.store.find_subject(conn, coll["id"], subject)["id"]
        return compat_queries.samples_of(conn, coll["id"], sid)
    rows = compat_queries.samples_of(conn, coll["id"])
    if sample_ids is None:
        return rows
    wanted = {int(i) for i in sample_ids}
    return [r for r in rows if r["sample_id"] in wanted]


def rename_subject(ctx: ServiceContext, collection: str, subject: str, new_name: str) -> bool:
    """Give a subject another name; False when it already had it. Refused (``subject_exists``) when
    another subject of the collection has that name: two people's consent records are never merged."""
    new_name = check_name(new_name, "subject")
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        subj = ctx.store.find_subject(conn, coll["id"], subject)
        if subj["name"] == new_name:
            return False
        if any(s["name"] == new_name for s in ctx.store.list_subjects(conn, coll["id"])):
            raise ConflictError(
                f"another subject is already named {new_name!r}; subjects are never merged (each has its "
                "own consent record)",
                code="subject_exists",
            )
        compat_queries.rename_subject(conn, subj["id"], new_name)
        ctx.log(conn, SubjectRenamed(collection=collection, subject_id=subj["id"]))
    return True


def erase_all_subjects(ctx: ServiceContext, collection: str) -> list[ErasureReceipt]:
    """Erase every subject of a collection (each with its own receipt); the collection stays."""
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        ids = [s["id"] for s in ctx.store.list_subjects(conn, coll["id"])]
    return [erase_subject(ctx, collection, f"#{sid}", reason="deleted") for sid in ids]
