"""Subjects: a person in a collection, always created together with the consent record that allows it
to exist; their samples; deleting one erases every trace of their face.

Every use case names a subject in one syntax (store/refs.py: ``#12`` or ``id:12``, ``ext:E-12``,
``name:Ann Lee``, or a bare reference that must name exactly one subject), resolved in one place,
``Store.find_subject``: a reference two subjects answer to is refused as ``ambiguous``, never guessed."""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from .. import imaging
from ..audit_events import SubjectAdded
from ..clock import iso, to_datetime, utcnow
from ..errors import ConsentError, InputError, NotFoundError
from ..results import (
    ConsentInfo,
    SampleInfo,
    SampleRecord,
    SubjectDeleted,
    SubjectInfo,
    SubjectSummary,
)
from ..store.refs import check_id
from .collections import check_name
from .context import Collection, ServiceContext
from .erasure import erase_subject

MAX_CONSENT_FILE_BYTES = 50 * 1024 * 1024


def consent_evidence(
    purpose: str | None,
    consent_text: str | None,
    consent_file: str | os.PathLike[str] | None,
    expires: date | datetime | str | None,
) -> tuple[bytes, str, str | None, datetime | None, datetime]:
    """The checks every consent record passes, the same for a subject and a library person: a purpose,
    exactly one piece of evidence (a file or a text), an end date not in the past. Returns (evidence,
    its kind, the file's name, the end date, now)."""
    if not (purpose or "").strip():
        raise ConsentError("a consent purpose is required")
    if (consent_text is None) == (consent_file is None):
        raise ConsentError("give exactly one piece of consent evidence: a file or a text")
    if consent_file is not None:
        evidence = imaging.read_file_bytes(consent_file, max_bytes=MAX_CONSENT_FILE_BYTES)
        if not evidence:
            raise ConsentError(f"consent file {consent_file} is empty")
        kind, evidence_name = "file", Path(consent_file).name
    else:
        assert consent_text is not None
        if not consent_text.strip():
            raise ConsentError("consent text must not be empty")
        evidence, kind, evidence_name = consent_text.encode("utf-8"), "text", None
    expires_at = parse_expiry(expires)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise ConsentError(f"consent expiry {expires_at.date()} is in the past")
    return evidence, kind, evidence_name, expires_at, now


def parse_expiry(value: date | datetime | str | None) -> datetime | None:
    """A consent end date (a date is midnight UTC of that day), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InputError(f"expiry {value!r} is not a date (use YYYY-MM-DD)") from exc
    return to_datetime(value)


def add_subject(
    ctx: ServiceContext,
    collection: str,
    name: str,
    *,
    purpose: str,
    consent_text: str | None = None,
    consent_file: str | os.PathLike[str] | None = None,
    consent_by: str | None = None,
    expires: date | datetime | str | None = None,
    external_id: str | None = None,
) -> SubjectInfo:
    """Create a subject together with the consent record that allows it to exist."""
    name = check_name(name or "", "subject")
    checked = consent_evidence(purpose, consent_text, consent_file, expires)
    evidence, kind, evidence_name, expires_at, now = checked
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        consent_id = ctx.store.add_consent(
            conn,
            purpose=purpose.strip(),
            granted_by=(consent_by or name).strip(),
            granted_at=now,
            expires_at=expires_at,
            evidence_kind=kind,
            evidence_name=evidence_name,
            evidence_sha256=hashlib.sha256(evidence).hexdigest(),
        )
        sid = ctx.store.add_subject(conn, coll["id"], name, external_id, consent_id)
        ctx.log(
            conn, SubjectAdded(purpose=purpose, collection=collection, subject_id=sid, consent_id=consent_id)
        )
        return subject_view(ctx, conn, coll, ctx.store.find_subject(conn, coll["id"], f"#{sid}"))


def subject_view(
    ctx: ServiceContext, conn: Connection, coll: Collection, subj: dict[str, Any], with_samples: bool = False
) -> SubjectInfo:
    consent = ctx.store.get_consent(conn, subj["consent_id"])
    samples = None
    if with_samples:
        samples = [
            SampleInfo(
                sample_id=s["id"],
                model_id=s["model_id"],
                image=s["source"],
                image_sha256=s["sha256"],
                box=[round(s[k], 1) for k in ("box_x1", "box_y1", "box_x2", "box_y2")],
                quality=s["quality"],
                created_at=iso(s["created_at"]),
                original_name=s.get("original_name"),
            )
            for s in ctx.store.subject_samples(conn, subj["id"])
        ]
    return SubjectInfo(
        id=subj["id"],
        collection=coll["name"],
        name=subj["name"],
        external_id=subj["external_id"],
        created_at=iso(subj["created_at"]),
        consent=ConsentInfo(
            id=consent["id"],
            purpose=consent["purpose"],
            granted_by=consent["granted_by"],
            granted_at=iso(consent["granted_at"]),
            expires_at=iso(consent["expires_at"]),
            withdrawn_at=iso(consent["withdrawn_at"]),
            evidence_kind=consent["evidence_kind"],
            evidence_name=consent["evidence_name"],
            evidence_sha256=consent["evidence_sha256"],
        ),
        samples=samples,
    )


def list_subjects(ctx: ServiceContext, collection: str) -> list[SubjectSummary]:
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        return [
            SubjectSummary(id=s["id"], name=s["name"], external_id=s["external_id"], samples=s["samples"])
            for s in ctx.store.list_subjects(conn, coll["id"])
        ]


def get_subject(ctx: ServiceContext, collection: str, subject: str) -> SubjectInfo:
    """One subject, named in the reference syntax of store/refs.py (``#12``, ``ext:E-12``, ``name:Ann``,
    or a bare reference that names exactly one subject)."""
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        subj = ctx.store.find_subject(conn, coll["id"], subject)
        return subject_view(ctx, conn, coll, subj, with_samples=True)


def get_sample(ctx: ServiceContext, collection: str, sample_id: int) -> SampleRecord:
    """One sample's record (no template): subject, source image, box."""
    check_id(sample_id, "sample id")
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        hit = ctx.store.sample_hits(conn, [sample_id]).get(sample_id)
        if hit is None or ctx.store.sample_collection(conn, sample_id) != coll["id"]:
            raise NotFoundError(f"no sample #{sample_id} in {collection!r}", code="sample_not_found")
    return SampleRecord(
        sample_id=hit.sample_id,
        subject_id=hit.subject_id,
        name=hit.subject_name,
        external_id=hit.external_id,
        image=hit.image_source,
        image_sha256=hit.image_sha256,
        box=[round(v, 1) for v in hit.box],
    )


def delete_subject(ctx: ServiceContext, collection: str, subject: str) -> SubjectDeleted:
    """Same as erasure: deleting a person always erases every trace of their face."""
    receipt = erase_subject(ctx, collection, subject, reason="deleted")
    return SubjectDeleted(**receipt.to_dict(), samples_removed=receipt.samples_erased)
