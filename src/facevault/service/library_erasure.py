"""Erasure in photo libraries: a person's face templates, crops, manual decisions, name and consent
record are deleted; the photos stay (a photo is not one person's alone).

Reached from three places: ``library person erase`` (a request), opt-out by selfie (``optout`` erases,
in every library of the opt-out's model, every person one of whose faces matches at the strict
threshold, and ``library add`` never stores a matching face again) and the retention sweep (a person's
consent withdrawn or expired, or the library's retention period over since the person was last seen).
Each erasure is one write transaction with its receipt in the audit log (counts, never biometric data).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from ..audit_events import LibraryPersonErased
from ..clock import utcnow
from ..privacy.policy import destruction_reason
from .context import ServiceContext
from .library import parse_person
from .library_cluster import forget, library_vectors

MAX_MATCHES = 1000


def erase_person(
    ctx: ServiceContext, library: str, person: str | int, *, reason: str = "request"
) -> dict[str, Any]:
    """Erase one person of a library (see the module's doc); returns the receipt."""
    number = parse_person(person)
    with ctx.write() as conn:
        lib = ctx.store.get_library(conn, library)
        row = ctx.store.get_person(conn, lib["id"], number)
        receipt = _erase_rows(ctx, conn, lib, row, reason)
    forget(ctx, lib["id"])
    ctx.store.checkpoint()  # the erased rows' old pages leave the write-ahead log
    return receipt


def _erase_rows(
    ctx: ServiceContext, conn: Any, lib: dict[str, Any], row: dict[str, Any], reason: str
) -> dict[str, Any]:
    faces = [int(f["id"]) for f in ctx.store.person_faces(conn, row["id"])]
    photos = len({f["photo_id"] for f in ctx.store.person_faces(conn, row["id"])})
    gone = ctx.store.delete_library_faces(conn, faces)
    ctx.store.forget_person_decisions(conn, row["id"])
    ctx.store.delete_people(conn, [row["id"]])
    consent_sha = None
    if row["consent_id"] is not None:
        consent = ctx.store.get_consent(conn, row["consent_id"])
        consent_sha = consent["evidence_sha256"]
        ctx.store.delete_consent(conn, row["consent_id"])
    receipt = {
        "library": lib["name"],
        "person": int(row["number"]),
        "reason": reason,
        "faces_erased": gone["faces"],
        "crops_erased": gone["crops"],
        "photos_kept": photos,
        "was_named": row["consent_id"] is not None,
        "consent_evidence_sha256": consent_sha,
        "erased_at": utcnow().isoformat(),
    }
    receipt["audit_seq"] = ctx.log(conn, LibraryPersonErased(purpose=lib["purpose"], receipt=dict(receipt)))
    return receipt


def erase_matching(
    ctx: ServiceContext, raw: np.ndarray, model_id: str, *, reason: str = "opt_out"
) -> list[dict[str, Any]]:
    """Opt-out: in every library of ``model_id``, erase every person one of whose faces matches ``raw`` (an
    unprotected embedding by that model) at the strict threshold, kept below the opt-out's expected number
    of wrong erasures for the library's size."""
    s = ctx.settings
    key = ctx.current_key()
    probe = key.protect(np.asarray(raw, dtype=np.float32))
    receipts: list[dict[str, Any]] = []
    with ctx.read() as conn:
        libs = [lib for lib in ctx.store.list_libraries(conn) if lib["model_id"] == model_id]
    for summary in libs:
        with ctx.write() as conn:
            lib = ctx.store.get_library(conn, summary["name"])
            rows = ctx.store.library_face_rows(conn, lib["id"])
            if not rows:
                continue
            lv = library_vectors(ctx, lib, conn, [r[0] for r in rows])
            thr = ctx.strict_threshold(
                model_id, min(s.conflict_fmr, s.optout_max_false_erasures / max(len(rows), 1))
            )
            sims, ids = lv.search(probe[None, :], min(MAX_MATCHES, len(rows)))
            matched = {int(i) for i, sc in zip(ids[0], sims[0], strict=True) if i >= 0 and sc >= thr}
            owner = {r[0]: r[1] for r in rows}
            people = {owner[f] for f in matched if owner.get(f) is not None}
            loose = [f for f in matched if owner.get(f) is None]
            if loose:
                ctx.store.delete_library_faces(conn, loose)
            for pid in sorted(people):
                row = ctx.store.people_by_id(conn, [pid])[pid]
                receipts.append(_erase_rows(ctx, conn, lib, row, reason))
        if matched:
            forget(ctx, lib["id"])
    if receipts:
        ctx.store.checkpoint()
    return receipts


# ---- retention -----------------------------------------------------------------------------------
def library_retention_due(ctx: ServiceContext, now: datetime | None = None) -> list[dict[str, Any]]:
    """People of every library whose faces must be destroyed now: consent withdrawn or expired (named
    people), or the library's retention period over since the person was last seen (faces added, named)."""
    now = now or utcnow()
    with ctx.read() as conn:
        rows = ctx.store.all_library_people(conn)
    due = []
    for r in rows:
        why = destruction_reason(r, now)
        if why is not None:
            due.append({"library": r["library"], "person": int(r["number"]), "reason": why})
    return due


def library_retention_sweep(ctx: ServiceContext, now: datetime | None = None) -> list[dict[str, Any]]:
    return [
        erase_person(ctx, d["library"], d["person"], reason=d["reason"])
        for d in library_retention_due(ctx, now)
    ]
