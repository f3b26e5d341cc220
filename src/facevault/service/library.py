"""Photo libraries: a set of photos with a declared owner, purpose, legal basis and retention period,
pinned to one model pack; every face in them, grouped into people (service/library_cluster.py).

This module holds the library's records and the manual decisions on people: list, show, name (only with
a consent record, made exactly as ``subject add`` makes one), hide, feature face, merge, split, move a
face, remove a face ("not this person"). Every decision is one write transaction with its audit entry;
faces placed by hand are ``pinned`` and a removal is a ``not_person`` decision, so ``recluster`` keeps
them. Adding photos is service/library_ingest.py (server paths) and service/library_uploads.py
(uploads, kept as copies), a photo's pixels service/library_photos.py, search
service/library_search.py, erasure service/library_erasure.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from .. import calibration
from ..audit_events import LibraryCreated, LibraryPersonChanged, LibraryPersonNamed
from ..clock import iso
from ..config import DEFAULT_RETENTION_DAYS, check_retention_days
from ..errors import ConsentError, InputError, NotFoundError
from ..models.registry import get_pack
from ..store.refs import MAX_ID, is_id_text
from .collections import accepted_license, check_name
from .context import ServiceContext
from .subjects import consent_evidence

Library = dict[str, Any]


# ---- libraries -----------------------------------------------------------------------------------
def create_library(
    ctx: ServiceContext,
    name: str,
    *,
    purpose: str,
    basis: str,
    owner: str | None = None,
    model: str | None = None,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    keep_crops: bool = False,
) -> dict[str, Any]:
    """A library pinned to ``model``, with the purpose and legal basis its processing is declared under.
    ``keep_crops``: keep an encrypted face crop of every face for thumbnails."""
    name = check_name(name, "library")
    if not (purpose or "").strip():
        raise InputError("a library needs a purpose (why are its faces indexed?)", code="purpose_required")
    if not (basis or "").strip():
        raise InputError("a library needs a legal basis", code="legal_basis_required")
    model_id = model or ctx.settings.default_model
    pack = get_pack(model_id)
    calibration.for_model(model_id)  # people are grouped at a calibrated threshold
    check_retention_days(retention_days)
    accepted_license(ctx, model_id)
    with ctx.write() as conn:
        lid = ctx.store.create_library(
            conn,
            name=name,
            owner=(owner or ctx.actor).strip(),
            purpose=purpose.strip(),
            legal_basis=basis.strip(),
            retention_days=int(retention_days),
            model_id=model_id,
            dim=pack.dim,
            keep_crops=bool(keep_crops),
            keep_copies=False,
        )
        ctx.log(
            conn,
            LibraryCreated(
                purpose=purpose.strip(),
                library=name,
                model_id=model_id,
                legal_basis=basis.strip(),
                retention_days=int(retention_days),
                keep_crops=bool(keep_crops),
            ),
        )
        return library_view(ctx.store.get_library(conn, name)) | {"id": lid}


def library_view(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "name",
        "owner",
        "purpose",
        "legal_basis",
        "retention_days",
        "model_id",
        "keep_crops",
        "keep_copies",
    )
    out = {k: row[k] for k in keys}
    out["created_at"] = iso(row["created_at"])
    for k in ("photos", "faces", "people"):
        if k in row:
            out[k] = int(row[k])
    return out


def list_libraries(ctx: ServiceContext) -> list[dict[str, Any]]:
    with ctx.read() as conn:
        return [library_view(r) for r in ctx.store.list_libraries(conn)]


def get_library(ctx: ServiceContext, name: str) -> dict[str, Any]:
    with ctx.read() as conn:
        ctx.store.get_library(conn, name)
        return next(library_view(r) for r in ctx.store.list_libraries(conn) if r["name"] == name)


# ---- people --------------------------------------------------------------------------------------
def parse_person(ref: str | int) -> int:
    """A person is named by its number: ``#12`` or ``12`` (an id's digits, from 1)."""
    text = str(ref).strip().removeprefix("#")
    if not is_id_text(text) or int(text) < 1:
        raise InputError(f"{ref!r} is not a person (use #N)", code="invalid_person")
    return int(text)


def person_label(person: dict[str, Any]) -> str:
    return person["name"] or f"person #{person['number']}"


def person_view(person: dict[str, Any]) -> dict[str, Any]:
    return {
        "person": int(person["number"]),
        "label": person_label(person),
        "name": person["name"],
        "named": person["consent_id"] is not None,
        "hidden": bool(person["hidden"]),
        "feature_face": person["feature_face_id"],
        "faces": int(person.get("faces", 0)),
        "photos": int(person.get("photos", 0)),
    }


def list_people(
    ctx: ServiceContext,
    library: str,
    *,
    include_hidden: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """People with face and photo counts, most faces first; hidden people only when asked; a page of
    ``limit`` people from ``offset`` (a library may hold hundreds of thousands)."""
    if (limit is not None and not 1 <= limit <= MAX_ID) or not 0 <= offset <= MAX_ID:  # the store's integers
        raise InputError(f"limit must be 1 to {MAX_ID} and offset 0 to {MAX_ID}", code="invalid_page")
    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        rows = ctx.store.list_people(
            conn, lib["id"], include_hidden=include_hidden, limit=limit, offset=offset
        )
        unset = [int(r["id"]) for r in rows if r["feature_face_id"] is None]
        faces = ctx.store.person_face_qualities(conn, lib["id"], unset)
    by_person: dict[int, list[dict[str, Any]]] = {}
    for f in faces:
        by_person.setdefault(int(f["person_id"]), []).append(f)
    # the thumbnail a person is shown with: the chosen feature face, else its best face (as show_person)
    return [
        person_view(r) | {"feature_face": r["feature_face_id"] or _best_face(by_person.get(int(r["id"]), []))}
        for r in rows
    ]


def face_view(face: dict[str, Any], photo: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "face_id": int(face["id"]),
        "photo_id": int(face["photo_id"]),
        "photo": photo["source"] if photo else None,
        "photo_sha256": photo["sha256"] if photo else None,
        "taken_at": iso(photo["taken_at"]) if photo else None,
        "box": [round(float(face[k]), 1) for k in ("box_x1", "box_y1", "box_x2", "box_y2")],
        # the frame of ``box``: the photo's upright pixel size at ingest (what library_photos serves)
        "image_width": photo["width"] if photo else None,
        "image_height": photo["height"] if photo else None,
        "landmarks": json.loads(face["landmarks"]),
        "quality": json.loads(face["quality"]),
        "detector_score": round(float(face["det_score"]), 3),
        "pinned": bool(face["pinned"]),
    }


def show_person(ctx: ServiceContext, library: str, person: str | int) -> dict[str, Any]:
    """One person: its record and every face, with the photo it is in."""
    number = parse_person(person)
    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        row = ctx.store.get_person(conn, lib["id"], number)
        faces = ctx.store.person_faces(conn, row["id"])
        photos = ctx.store.library_photos(conn, (f["photo_id"] for f in faces))
        consent = ctx.store.get_consent(conn, row["consent_id"]) if row["consent_id"] else None
    view = person_view({**row, "faces": len(faces), "photos": len(photos)})
    view["feature_face"] = row["feature_face_id"] or _best_face(faces)
    view["faces_list"] = [face_view(f, photos.get(f["photo_id"])) for f in faces]
    if consent is not None:
        view["consent"] = {
            "id": consent["id"],
            "purpose": consent["purpose"],
            "granted_by": consent["granted_by"],
            "granted_at": iso(consent["granted_at"]),
            "expires_at": iso(consent["expires_at"]),
            "evidence_kind": consent["evidence_kind"],
            "evidence_sha256": consent["evidence_sha256"],
        }
    return view


def _best_face(faces: list[dict[str, Any]]) -> int | None:
    if not faces:
        return None
    return int(max(faces, key=lambda f: json.loads(f["quality"]).get("overall", 0.0))["id"])


def _person(
    ctx: ServiceContext, conn: Connection, library: str, ref: str | int
) -> tuple[Library, dict[str, Any]]:
    lib = ctx.store.get_library(conn, library)
    return lib, ctx.store.get_person(conn, lib["id"], parse_person(ref))


def _changed(
    ctx: ServiceContext,
    conn: Connection,
    lib: Library,
    change: str,
    person: dict[str, Any],
    other: dict[str, Any] | None = None,
    faces: list[int] | None = None,
) -> int:
    return ctx.log(
        conn,
        LibraryPersonChanged(
            purpose=lib["purpose"],
            library=lib["name"],
            change=change,
            person=int(person["number"]),
            other_person=None if other is None else int(other["number"]),
            faces=faces,
        ),
    )


def name_person(
    ctx: ServiceContext,
    library: str,
    person: str | int,
    name: str,
    *,
    purpose: str,
    consent_text: str | None = None,
    consent_file: str | os.PathLike[str] | None = None,
    consent_by: str | None = None,
    expires: date | datetime | str | None = None,
) -> dict[str, Any]:
    """Put a name on a person: only with a consent record, made exactly as ``subject add`` makes one
    (a purpose and one piece of evidence: a file or a text; an optional end date)."""
    name = check_name(name or "", "person")
    checked = consent_evidence(purpose, consent_text, consent_file, expires)
    evidence, kind, evidence_name, expires_at, now = checked
    with ctx.write() as conn:
        lib, row = _person(ctx, conn, library, person)
        if row["consent_id"] is not None:
            raise ConsentError(f"person #{row['number']} is named already", code="already_named")
        consent_id = ctx.store.add_consent(
            conn,
            purpose=purpose.strip(),
            granted_by=(consent_by or name).strip(),
            granted_at=now,
            expires_at=expires_at,
            evidence_kind=kind,
            evidence_name=evidence_name,
            evidence_sha256=hashlib.sha256(evidence).hexdigest(),
            scope=f"library:{lib['name']}",
        )
        ctx.store.update_person(conn, row["id"], name=name, consent_id=consent_id, last_interaction_at=now)
        seq = ctx.log(
            conn,
            LibraryPersonNamed(
                purpose=purpose.strip(), library=lib["name"], person=int(row["number"]), consent_id=consent_id
            ),
        )
    return {"person": int(row["number"]), "name": name, "consent_id": consent_id, "audit_seq": seq}


def hide_person(ctx: ServiceContext, library: str, person: str | int, hidden: bool = True) -> dict[str, Any]:
    with ctx.write() as conn:
        lib, row = _person(ctx, conn, library, person)
        ctx.store.update_person(conn, row["id"], hidden=bool(hidden))
        ctx.store.add_decision(conn, lib["id"], "hide", ctx.actor, person_id=row["id"])
        seq = _changed(ctx, conn, lib, "hide" if hidden else "unhide", row)
    return {"person": int(row["number"]), "hidden": bool(hidden), "audit_seq": seq}


def feature_face(ctx: ServiceContext, library: str, person: str | int, face_id: int) -> dict[str, Any]:
    with ctx.write() as conn:
        lib, row = _person(ctx, conn, library, person)
        face = _faces(ctx, conn, lib, [face_id])[0]
        if face["person_id"] != row["id"]:
            raise InputError(
                f"face #{face_id} is not a face of person #{row['number']}", code="not_this_person"
            )
        ctx.store.update_person(conn, row["id"], feature_face_id=int(face_id))
        seq = _changed(ctx, conn, lib, "feature", row, faces=[int(face_id)])
    return {"person": int(row["number"]), "feature_face": int(face_id), "audit_seq": seq}


def _faces(ctx: ServiceContext, conn: Connection, lib: Library, face_ids: list[int]) -> list[dict[str, Any]]:
    if not face_ids:
        raise InputError("name at least one face", code="invalid_input")
    found = ctx.store.library_faces(conn, face_ids)
    missing = [f for f in face_ids if f not in found or found[f]["library_id"] != lib["id"]]
    if missing:
        raise NotFoundError(f"no face #{missing[0]} in library {lib['name']!r}", code="face_not_found")
    return [found[f] for f in face_ids]


def merge_people(ctx: ServiceContext, library: str, into: str | int, other: str | int) -> dict[str, Any]:
    """``other`` is the same person as ``into``: its faces move to ``into`` (pinned) and it is gone.
    Two named people are not merged (two consent records): erase one first."""
    with ctx.write() as conn:
        lib, keep = _person(ctx, conn, library, into)
        _, gone = _person(ctx, conn, library, other)
        if keep["id"] == gone["id"]:
            raise InputError("a person cannot be merged with itself", code="invalid_input")
        if gone["consent_id"] is not None and keep["consent_id"] is not None:
            raise ConsentError("both people are named: each has its own consent record", code="both_named")
        if gone["consent_id"] is not None:  # the name (and its consent) stays with the surviving number
            ctx.store.update_person(conn, keep["id"], name=gone["name"], consent_id=gone["consent_id"])
            ctx.store.update_person(conn, gone["id"], name=None, consent_id=None)
        faces = [int(f["id"]) for f in ctx.store.person_faces(conn, gone["id"])]
        ctx.store.set_face_person(conn, faces, keep["id"], pinned=True)
        ctx.store.set_face_person(
            conn, [int(f["id"]) for f in ctx.store.person_faces(conn, keep["id"])], keep["id"], pinned=True
        )
        ctx.store.add_decision(
            conn, lib["id"], "merge", ctx.actor, person_id=keep["id"], other_person_id=gone["id"]
        )
        ctx.store.forget_person_decisions(conn, gone["id"])
        ctx.store.delete_people(conn, [gone["id"]])
        ctx.store.touch_person(conn, keep["id"])
        seq = _changed(ctx, conn, lib, "merge", keep, gone, faces)
    return {
        "person": int(keep["number"]),
        "merged": int(gone["number"]),
        "faces_moved": len(faces),
        "audit_seq": seq,
    }


def split_person(ctx: ServiceContext, library: str, person: str | int, face_ids: list[int]) -> dict[str, Any]:
    """Move ``face_ids`` out of ``person`` into a new person: both sides are pinned (re-clustering keeps
    them apart) and the faces split off are never put back on ``person``."""
    with ctx.write() as conn:
        lib, row = _person(ctx, conn, library, person)
        faces = _faces(ctx, conn, lib, face_ids)
        if any(f["person_id"] != row["id"] for f in faces):
            raise InputError(
                f"every face split off must be a face of person #{row['number']}", code="not_this_person"
            )
        new = ctx.store.add_person(conn, lib["id"])
        ctx.store.set_face_person(conn, face_ids, new["id"], pinned=True)
        # Both sides are a decision: the faces left behind stay with the person, apart from those split off.
        rest = [int(f["id"]) for f in ctx.store.person_faces(conn, row["id"])]
        ctx.store.set_face_person(conn, rest, row["id"], pinned=True)
        for fid in face_ids:
            ctx.store.add_decision(conn, lib["id"], "not_person", ctx.actor, face_id=fid, person_id=row["id"])
        ctx.store.add_decision(
            conn, lib["id"], "split", ctx.actor, person_id=row["id"], other_person_id=new["id"]
        )
        new_row = ctx.store.get_person(conn, lib["id"], new["number"])
        seq = _changed(ctx, conn, lib, "split", row, new_row, [int(f) for f in face_ids])
    return {
        "person": int(row["number"]),
        "new_person": int(new["number"]),
        "faces_moved": len(face_ids),
        "audit_seq": seq,
    }


def move_face(ctx: ServiceContext, library: str, face_id: int, to: str | int) -> dict[str, Any]:
    """Put a face on another person by hand (pinned; never back to the person it left)."""
    with ctx.write() as conn:
        lib, target = _person(ctx, conn, library, to)
        face = _faces(ctx, conn, lib, [face_id])[0]
        old = face["person_id"]
        ctx.store.set_face_person(conn, [face_id], target["id"], pinned=True)
        if old is not None and old != target["id"]:
            ctx.store.add_decision(conn, lib["id"], "not_person", ctx.actor, face_id=face_id, person_id=old)
        ctx.store.add_decision(
            conn, lib["id"], "move", ctx.actor, face_id=face_id, person_id=target["id"], other_person_id=old
        )
        ctx.store.delete_people(conn, ctx.store.empty_people(conn, lib["id"]))
        ctx.store.touch_person(conn, target["id"])
        seq = _changed(ctx, conn, lib, "move", target, faces=[int(face_id)])
    return {"face_id": int(face_id), "person": int(target["number"]), "audit_seq": seq}


def remove_face(ctx: ServiceContext, library: str, person: str | int, face_id: int) -> dict[str, Any]:
    """ "Not this person": the face leaves ``person`` for a person of its own and is never put back."""
    with ctx.write() as conn:
        lib, row = _person(ctx, conn, library, person)
        face = _faces(ctx, conn, lib, [face_id])[0]
        if face["person_id"] != row["id"]:
            raise InputError(
                f"face #{face_id} is not a face of person #{row['number']}", code="not_this_person"
            )
        alone = ctx.store.add_person(conn, lib["id"])
        ctx.store.set_face_person(conn, [face_id], alone["id"], pinned=False)
        ctx.store.add_decision(conn, lib["id"], "not_person", ctx.actor, face_id=face_id, person_id=row["id"])
        seq = _changed(ctx, conn, lib, "remove", row, faces=[int(face_id)])
    return {
        "face_id": int(face_id),
        "person": int(row["number"]),
        "now_person": int(alone["number"]),
        "audit_seq": seq,
    }


def face_crop(ctx: ServiceContext, library: str, face_id: int) -> tuple[bytes, str] | None:
    """The decrypted thumbnail crop of a face (libraries with ``keep_crops``), or None."""
    from .library_cluster import crop_context

    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        _faces(ctx, conn, lib, [face_id])
        row = ctx.store.library_crop(conn, face_id)
    if row is None:
        return None
    data = ctx.keys.key(row["key_version"]).decrypt(
        row["image"], crop_context(lib["id"], face_id), f"the crop of face #{face_id}"
    )
    return data, row["media_type"]
