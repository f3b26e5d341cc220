"""One sample at a time: erase a wrong photo of a subject (with an erasure receipt), or move it to the
subject it really shows. The subject and its consent record stay in both cases. Also the uploaded file
names of photos enrolled over HTTP (``images.original_name``): recorded after their enrollment and shown
with the subject's samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from ..audit_events import AuditEvent
from ..errors import InputError, NotFoundError
from ..results import EnrollOutcome, Record, SubjectInfo
from ..store import schema as t
from .compat_faces import SamplesReceipt, erase_samples
from .context import ServiceContext
from .enroll import require_valid_consent

if TYPE_CHECKING:
    from .vault import Vault


@dataclass(frozen=True, kw_only=True)
class SampleMoved(AuditEvent):
    """A sample was moved to another subject of its collection (ids only: names stay out of the log)."""

    action = "sample.move"  # type: ignore[misc]
    sample_id: int
    from_subject_id: int
    to_subject_id: int


@dataclass(eq=False)
class SampleMove(Record):
    """What ``move_sample`` did (its audit entry holds the ids)."""

    collection: str
    sample_id: int
    from_subject_id: int
    from_name: str
    to_subject_id: int
    to_name: str
    audit_seq: int


def _owned(
    ctx: ServiceContext, conn: Any, coll: dict[str, Any], subject: str, sample_id: int
) -> dict[str, Any]:
    """The subject ``subject`` names, refused (``sample_not_found``) unless the sample is one of theirs."""
    subj = ctx.store.find_subject(conn, coll["id"], subject)
    hit = ctx.store.sample_hits(conn, [int(sample_id)]).get(int(sample_id))
    if (
        hit is None
        or hit.subject_id != subj["id"]
        or ctx.store.sample_collection(conn, sample_id) != coll["id"]
    ):
        raise NotFoundError(f"{subj['name']} has no sample #{sample_id}", code="sample_not_found")
    return subj


def erase_sample(ctx: ServiceContext, collection: str, subject: str, sample_id: int) -> SamplesReceipt:
    """Erase one sample of ``subject``: its template, crop, image record and kept photo copy, with an
    erasure receipt in the audit log (``samples.erase``)."""
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        _owned(ctx, conn, coll, subject, sample_id)
    receipts = erase_samples(ctx, collection, sample_ids=[int(sample_id)], reason="wrong sample deleted")
    if not receipts:  # erased meanwhile by someone else
        raise NotFoundError(f"no sample #{sample_id} in {collection!r}", code="sample_not_found")
    return receipts[0]


def move_sample(ctx: ServiceContext, collection: str, subject: str, sample_id: int, to: str) -> SampleMove:
    """Move one sample of ``subject`` to the subject ``to`` names (same collection, valid consent)."""
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        src = _owned(ctx, conn, coll, subject, sample_id)
        dst = ctx.store.find_subject(conn, coll["id"], to)
        if dst["id"] == src["id"]:
            raise InputError("the sample already belongs to this subject", code="invalid_input")
        require_valid_consent(ctx.store.get_consent(conn, dst["consent_id"]))
        conn.execute(update(t.samples).where(t.samples.c.id == int(sample_id)).values(subject_id=dst["id"]))
        seq = ctx.log(
            conn,
            SampleMoved(
                collection=collection,
                sample_id=int(sample_id),
                from_subject_id=int(src["id"]),
                to_subject_id=int(dst["id"]),
            ),
        )
    return SampleMove(collection, int(sample_id), src["id"], src["name"], dst["id"], dst["name"], seq)


# ---- uploaded file names --------------------------------------------------------------------------
def record_original_names(
    vault: Vault, collection: str, outcomes: Sequence[EnrollOutcome], names: Sequence[str]
) -> int:
    """Give each outcome its uploaded file's name (``names``, in the same order) and record it on the
    image row of every photo that was enrolled; returns how many rows were named. Written after the
    enrollment's own commit: a subject or sample erased in between leaves no name behind (the update
    finds no row), and the name goes with the image row on any later erasure."""
    named: dict[int, str] = {}
    for out, name in zip(outcomes, names, strict=True):
        out.original_name = name
        if out.ok and out.sample_id is not None:
            named[int(out.sample_id)] = name
    if not named:
        return 0
    ctx = vault.context
    with ctx.write() as conn:
        cid = int(ctx.store.get_collection(conn, collection)["id"])
        return ctx.store.name_images(conn, cid, named)


def with_original_names(vault: Vault, info: SubjectInfo) -> SubjectInfo:
    """``info`` with each listed sample's uploaded file name (``original_name``; None when enrolled
    from a path)."""
    samples = info.samples or []
    if not samples or all(s.original_name is not None for s in samples):
        return info
    ctx = vault.context
    with ctx.read() as conn:
        names = ctx.store.original_names(conn, [s.sample_id for s in samples])
    return replace(info, samples=[replace(s, original_name=names.get(s.sample_id)) for s in samples])
