"""Erasure in photo libraries: a person's face templates, crops, manual decisions, name and consent
record are deleted. What happens to the photos the person appears in is the caller's choice
(``photos``), because a photo is not one person's alone:

- ``keep`` (the default, and what the retention sweep does): the photos stay as they are, with the
  other people's faces; kept copies stay too.
- ``blur``: in each kept copy (uploaded photos) the person's face regions are replaced by a strong blur
  (library_photos.blur_faces); the new file replaces the copy and the photo row follows it (hash, size),
  so later reads verify; the other faces of the photo stay, in the same frame. A photo referenced by a
  server path is never modified (facevault does not write to the folders it indexes): it is counted in
  ``photos_kept`` and in ``photos_not_owned`` (the faces are erased, the file is not blurred), and a kept
  copy that is missing or changed since it was indexed is counted in ``photos_kept``.
- ``remove``: the photos leave the library for everyone: their rows, every face in them (the other
  people's too: ``other_faces_removed``; unnamed people left without a face are deleted, named people
  stay) and the kept copies. Files referenced by a server path are not deleted, only forgotten.

A photo blurred or removed leaves a row with status ``erased`` holding only the original hash (no
source, no faces), so adding the same file again is skipped rather than indexing the person again.
Its copies change after the transaction commits: the blurred copy is staged first and moved into place
after the commit, and the old copies are deleted after it; a marker file in the library staging area
makes the next open of the vault delete the copies no row keeps if the process is killed on the way
(service/photos.py, ``sweep_library_copies``).

Reached from three places: ``library person erase`` (a request), opt-out by selfie (``optout`` erases,
in every library of the opt-out's model, every person one of whose faces matches at the strict
threshold, and ``library add`` never stores a matching face again) and the retention sweep (a person's
consent withdrawn or expired, or the library's retention period over since the person was last seen).

An opt-out always blurs (``erase_matching``): someone who opted out must not stay viewable in the
library's kept copies. Every face it erases in a library (the matched people's faces, and matching
faces that belong to no person) is blurred in one pass per photo, in the same transaction and with the
same staged copy, marker and tombstone as ``photos="blur"``; a photo by server path keeps its pixels
(``photos_not_owned``). At later ingest a face blocked by an opt-out is blurred in an uploaded photo's
copy before it is staged (service/library_ingest.py).
Each erasure is one write transaction with its receipt in the audit log (counts, never biometric data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from .. import faults
from ..audit_events import LibraryPersonErased
from ..clock import utcnow
from ..errors import FaceVaultError, InputError
from ..privacy.policy import destruction_reason
from ..store.library_queries import ERASED
from .context import ServiceContext
from .library import parse_person
from .library_cluster import forget, library_vectors
from .library_photos import blurred_bytes, read_photo
from .photos import (
    Staged,
    begin_library_file_changes,
    library_copy_owned,
    library_copy_path,
    place_library_copy,
    stage_library_copy,
)

MAX_MATCHES = 1000


PHOTO_MODES = ("keep", "blur", "remove")


@dataclass
class _CopyChanges:
    """What an erasure does to a library's kept copies once its transaction has committed."""

    staged: list[Staged] = field(default_factory=list)  # blurred copies, moved into place
    gone: list[str] = field(default_factory=list)  # hashes of the copies deleted

    def finish(self, ctx: ServiceContext, library_id: int) -> int:
        for st in self.staged:
            place_library_copy(ctx, st)
        removed = 0
        for sha in self.gone:
            if not library_copy_owned(ctx, library_id, sha):
                path = library_copy_path(ctx.settings, library_id, sha)
                removed += int(path.exists())
                path.unlink(missing_ok=True)
        return removed

    def discard(self) -> None:
        for st in self.staged:
            st.path.unlink(missing_ok=True)


def erase_person(
    ctx: ServiceContext,
    library: str,
    person: str | int,
    *,
    reason: str = "request",
    photos: str = "keep",
) -> dict[str, Any]:
    """Erase one person of a library; ``photos``: keep, blur or remove the photos the person is in (see
    the module's doc). Returns the receipt."""
    if photos not in PHOTO_MODES:
        raise InputError(f"photos must be one of {', '.join(PHOTO_MODES)}", code="invalid_photos_mode")
    number = parse_person(person)
    with ctx.read() as conn:
        lib_id = int(ctx.store.get_library(conn, library)["id"])
    marker = begin_library_file_changes(ctx.settings, lib_id) if photos != "keep" else None
    changes = _CopyChanges()
    try:
        with ctx.write() as conn:
            lib = ctx.store.get_library(conn, library)
            row = ctx.store.get_person(conn, lib["id"], number)
            receipt = _erase_rows(ctx, conn, lib, row, reason, photos, changes)
        faults.point("library_erase:committed")
        changes.finish(ctx, lib_id)
    finally:
        changes.discard()
        if marker is not None:
            marker.unlink(missing_ok=True)
    forget(ctx, lib_id)
    ctx.store.checkpoint()  # the erased rows' old pages leave the write-ahead log
    return receipt


def _erase_rows(
    ctx: ServiceContext,
    conn: Any,
    lib: dict[str, Any],
    row: dict[str, Any],
    reason: str,
    photos: str = "keep",
    changes: _CopyChanges | None = None,
    blurred: set[int] | None = None,
) -> dict[str, Any]:
    """One person's rows, with the receipt. ``blurred``: with ``photos="blur"``, the ids of the photos
    the caller has blurred already in this transaction (``erase_matching``); None: blur them here."""
    person_faces = ctx.store.person_faces(conn, row["id"])
    faces = [int(f["id"]) for f in person_faces]
    boxes = _boxes(person_faces)
    gone = ctx.store.delete_library_faces(conn, faces)
    done = {"photos_kept": len(boxes), "photos_blurred": 0, "photos_removed": 0, "other_faces_removed": 0}
    rows = ctx.store.library_photos(conn, boxes) if boxes else {}
    for pid, photo in rows.items():  # the photos' face counts follow
        photo["faces"] = max(0, int(photo["faces"]) - len(boxes[pid]))
        ctx.store.update_library_photo(conn, pid, faces=photo["faces"])
    if photos == "blur":
        if blurred is None:
            blurred = _blur(ctx, conn, lib, rows, boxes, changes or _CopyChanges())
        done |= _blur_counts(rows, boxes, blurred)
    elif photos == "remove":
        done |= _remove(ctx, conn, lib, rows, changes or _CopyChanges())
    ctx.store.forget_person_decisions(conn, row["id"])
    ctx.store.delete_people(conn, [row["id"]])
    if photos == "remove":  # people whose every face was in the removed photos
        ctx.store.delete_people(conn, ctx.store.empty_people(conn, lib["id"]))
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
        "photos": photos,
        **done,
        "was_named": row["consent_id"] is not None,
        "consent_evidence_sha256": consent_sha,
        "erased_at": utcnow().isoformat(),
    }
    receipt["audit_seq"] = ctx.log(conn, LibraryPersonErased(purpose=lib["purpose"], receipt=dict(receipt)))
    return receipt


def _boxes(face_rows: list[dict[str, Any]]) -> dict[int, list[tuple[float, float, float, float]]]:
    """The face boxes of these face rows, by photo id."""
    boxes: dict[int, list[tuple[float, float, float, float]]] = {}
    for f in face_rows:
        boxes.setdefault(int(f["photo_id"]), []).append(
            (float(f["box_x1"]), float(f["box_y1"]), float(f["box_x2"]), float(f["box_y2"]))
        )
    return boxes


def _tombstone(ctx: ServiceContext, conn: Any, photo_id: int) -> None:
    """The row keeps only its hash (module docstring)."""
    ctx.store.update_library_photo(
        conn,
        photo_id,
        status=ERASED,
        source="erased",
        stored=False,
        size_bytes=0,
        width=None,
        height=None,
        taken_at=None,
        orientation=None,
        faces=0,
        error=None,
    )


def _blur(
    ctx: ServiceContext,
    conn: Any,
    lib: dict[str, Any],
    rows: dict[int, dict[str, Any]],
    boxes: dict[int, list[tuple[float, float, float, float]]],
    changes: _CopyChanges,
) -> set[int]:
    """Blur ``boxes`` (by photo id) in the kept copies of those photos (``rows``); returns the ids of the
    photos blurred (a photo by server path, or whose copy is missing or changed, is not)."""
    lid = int(lib["id"])
    blurred: set[int] = set()
    for pid, face_boxes in sorted(boxes.items()):
        photo = rows[pid]
        if not photo["stored"]:
            continue  # a server path: never written to
        try:
            decoded = read_photo(ctx, lid, photo)
        except FaceVaultError:
            continue  # the copy is missing or changed: nothing of it is served (library_photos.py)
        data = blurred_bytes(decoded, face_boxes)
        staged = stage_library_copy(ctx.settings, lid, data)
        if ctx.store.library_photo_by_sha(conn, lid, staged.sha256) is not None:
            staged.path.unlink(missing_ok=True)  # the same bytes as another photo (never in practice)
            continue
        changes.staged.append(staged)
        changes.gone.append(photo["sha256"])
        # The photo (and its other faces) follows the new file; its old hash stays as a tombstone.
        ctx.store.update_library_photo(
            conn, pid, sha256=staged.sha256, size_bytes=len(data), orientation=None
        )
        ctx.store.add_library_photo(
            conn,
            library_id=lid,
            sha256=photo["sha256"],
            source="erased",
            stored=False,
            size_bytes=0,
            status=ERASED,
        )
        blurred.add(pid)
    return blurred


def _blur_counts(
    rows: dict[int, dict[str, Any]], boxes: dict[int, list[Any]], blurred: set[int]
) -> dict[str, int]:
    n = len(blurred & boxes.keys())
    not_owned = sum(1 for pid in boxes if pid in rows and not rows[pid]["stored"])
    return {"photos_kept": len(boxes) - n, "photos_blurred": n, "photos_not_owned": not_owned}


def _remove(
    ctx: ServiceContext,
    conn: Any,
    lib: dict[str, Any],
    rows: dict[int, dict[str, Any]],
    changes: _CopyChanges,
) -> dict[str, int]:
    others = 0
    for pid, photo in sorted(rows.items()):
        left = [f for f, _ in ctx.store.photo_face_ids(conn, pid)]  # the person's own are gone already
        others += ctx.store.delete_library_faces(conn, left)["faces"]
        if photo["stored"]:
            changes.gone.append(photo["sha256"])
        _tombstone(ctx, conn, pid)
    return {"photos_kept": 0, "photos_removed": len(rows), "other_faces_removed": others}


@dataclass
class MatchErasure:
    """What an opt-out did to the photo libraries: one receipt per person erased, and the photos whose
    kept copy it blurred (``photos_blurred``) or could not blur because they are indexed by a server
    path that facevault does not own (``photos_not_owned``: the faces are erased, the file is as it was)."""

    receipts: list[dict[str, Any]] = field(default_factory=list)
    photos_blurred: int = 0
    photos_not_owned: int = 0


def erase_matching(
    ctx: ServiceContext, raw: np.ndarray, model_id: str, *, reason: str = "opt_out"
) -> MatchErasure:
    """Opt-out: in every library of ``model_id``, erase every person one of whose faces matches ``raw`` (an
    unprotected embedding by that model) at the strict threshold, kept below the opt-out's expected number
    of wrong erasures for the library's size, and blur every face erased in the library's kept copies
    (module docstring)."""
    key = ctx.current_key()
    probe = key.protect(np.asarray(raw, dtype=np.float32))
    out = MatchErasure()
    with ctx.read() as conn:
        libs = [lib for lib in ctx.store.list_libraries(conn) if lib["model_id"] == model_id]
    for summary in libs:
        lib_id = int(summary["id"])
        marker = begin_library_file_changes(ctx.settings, lib_id)
        changes = _CopyChanges()
        try:
            with ctx.write() as conn:
                matched = _erase_matching_in(
                    ctx, conn, summary["name"], probe, model_id, reason, changes, out
                )
            faults.point("library_erase:committed")
            changes.finish(ctx, lib_id)
        finally:
            changes.discard()
            marker.unlink(missing_ok=True)
        if matched:
            forget(ctx, lib_id)
    if out.receipts or out.photos_blurred:
        ctx.store.checkpoint()
    return out


def _erase_matching_in(
    ctx: ServiceContext,
    conn: Any,
    library: str,
    probe: np.ndarray,
    model_id: str,
    reason: str,
    changes: _CopyChanges,
    out: MatchErasure,
) -> bool:
    """One library's part of ``erase_matching``, in the caller's transaction; returns whether any face
    matched."""
    s = ctx.settings
    lib = ctx.store.get_library(conn, library)
    rows = ctx.store.library_face_rows(conn, lib["id"])
    if not rows:
        return False
    lv = library_vectors(ctx, lib, conn, [r[0] for r in rows])
    thr = ctx.strict_threshold(model_id, min(s.conflict_fmr, s.optout_max_false_erasures / max(len(rows), 1)))
    sims, ids = lv.search(probe[None, :], min(MAX_MATCHES, len(rows)))
    matched = {int(i) for i, sc in zip(ids[0], sims[0], strict=True) if i >= 0 and sc >= thr}
    if not matched:
        return False
    owner = {r[0]: r[1] for r in rows}
    people = sorted({owner[f] for f in matched if owner.get(f) is not None})
    loose = sorted(f for f in matched if owner.get(f) is None)
    # Every face this opt-out erases, blurred in one pass per photo (two of them in one photo included).
    loose_rows = list(ctx.store.library_faces(conn, loose).values()) if loose else []
    erased_faces = loose_rows + [f for pid in people for f in ctx.store.person_faces(conn, pid)]
    boxes = _boxes(erased_faces)
    photo_rows = ctx.store.library_photos(conn, boxes)
    blurred = _blur(ctx, conn, lib, photo_rows, boxes, changes)
    out.photos_blurred += len(blurred)
    out.photos_not_owned += _blur_counts(photo_rows, boxes, blurred)["photos_not_owned"]
    if loose:
        ctx.store.delete_library_faces(conn, loose)
        for pid, face_boxes in _boxes(loose_rows).items():  # the photos' face counts follow
            faces = max(0, int(photo_rows[pid]["faces"]) - len(face_boxes))
            ctx.store.update_library_photo(conn, pid, faces=faces)
    for pid in people:
        row = ctx.store.people_by_id(conn, [pid])[pid]
        out.receipts.append(_erase_rows(ctx, conn, lib, row, reason, "blur", changes, blurred))
    return True


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
    """Erase every person due (photos kept: a retention period ends one person's processing)."""
    return [
        erase_person(ctx, d["library"], d["person"], reason=d["reason"])
        for d in library_retention_due(ctx, now)
    ]
