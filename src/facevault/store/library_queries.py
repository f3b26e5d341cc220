"""Queries on photo libraries: libraries, their photos, faces (protected templates), face crops, people
and manual decisions. The ``LibraryQueries`` part of ``Store`` (store/database.py); every method takes the
connection of the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from ..clock import utcnow
from ..errors import ConflictError, NotFoundError
from . import schema as t

FACE_PAGE = 5000
# The status of a photo row whose content an erasure removed or replaced: it keeps only the hash, so that
# adding the same file again is skipped (service/library_erasure.py).
ERASED = "erased"


class LibraryQueries:
    """Libraries and everything in them (mixed into ``Store``)."""

    # ---- libraries ---------------------------------------------------------------------------------
    def create_library(self, conn: Connection, **values: Any) -> int:
        if conn.execute(select(t.libraries.c.id).where(t.libraries.c.name == values["name"])).first():
            raise ConflictError(f"library {values['name']!r} exists", code="library_exists")
        res = conn.execute(insert(t.libraries).values(created_at=utcnow(), next_person=1, **values))
        return int(res.inserted_primary_key[0])

    def get_library(self, conn: Connection, name: str) -> dict[str, Any]:
        row = conn.execute(select(t.libraries).where(t.libraries.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no library named {name!r}", code="library_not_found")
        return dict(row)

    def update_library(self, conn: Connection, library_id: int, **values: Any) -> None:
        conn.execute(update(t.libraries).where(t.libraries.c.id == library_id).values(**values))

    def list_libraries(self, conn: Connection) -> list[dict[str, Any]]:
        lib, ph, fa, pe = t.libraries, t.library_photos, t.library_faces, t.library_people
        photos = (
            select(func.count()).where(ph.c.library_id == lib.c.id, ph.c.status != ERASED).scalar_subquery()
        )
        faces = select(func.count()).where(fa.c.library_id == lib.c.id).scalar_subquery()
        people = select(func.count()).where(pe.c.library_id == lib.c.id).scalar_subquery()
        q = select(lib, photos.label("photos"), faces.label("faces"), people.label("people")).order_by(
            lib.c.id
        )
        return [dict(r) for r in conn.execute(q).mappings()]

    # ---- photos ------------------------------------------------------------------------------------
    def library_photo_by_sha(self, conn: Connection, library_id: int, sha256: str) -> dict[str, Any] | None:
        p = t.library_photos.c
        q = select(t.library_photos).where(p.library_id == library_id, p.sha256 == sha256)
        row = conn.execute(q).mappings().first()
        return dict(row) if row else None

    def library_photo_states(self, conn: Connection, library_id: int) -> dict[str, str]:
        """sha256 -> status of every photo of the library (what a re-run of ``add`` skips)."""
        p = t.library_photos.c
        return {
            r[0]: r[1] for r in conn.execute(select(p.sha256, p.status).where(p.library_id == library_id))
        }

    def library_photo_ids(self, conn: Connection, library_id: int, shas: Iterable[str]) -> dict[str, int]:
        """sha256 -> photo id of those of ``shas`` the library holds."""
        p = t.library_photos.c
        wanted = sorted(set(shas))
        out: dict[str, int] = {}
        for start in range(0, len(wanted), 900):
            q = select(p.sha256, p.id).where(
                p.library_id == library_id, p.sha256.in_(wanted[start : start + 900])
            )
            out.update({str(a): int(b) for a, b in conn.execute(q)})
        return out

    def library_copy_shas(self, conn: Connection, library_id: int) -> set[str]:
        """The hashes of the photos of which the library keeps a copy (the names of its copy files)."""
        p = t.library_photos.c
        q = select(p.sha256).where(p.library_id == library_id, p.stored.is_(True), p.status == "done")
        return {str(r[0]) for r in conn.execute(q)}

    def photo_face_ids(self, conn: Connection, photo_id: int) -> list[tuple[int, int | None]]:
        """(face id, person id) of every face of one photo."""
        f = t.library_faces.c
        q = select(f.id, f.person_id).where(f.photo_id == photo_id).order_by(f.id)
        return [(int(a), None if b is None else int(b)) for a, b in conn.execute(q)]

    def add_library_photo(self, conn: Connection, **values: Any) -> int:
        res = conn.execute(insert(t.library_photos).values(added_at=utcnow(), faces=0, **values))
        return int(res.inserted_primary_key[0])

    def update_library_photo(self, conn: Connection, photo_id: int, **values: Any) -> None:
        conn.execute(update(t.library_photos).where(t.library_photos.c.id == photo_id).values(**values))

    def library_photos(self, conn: Connection, photo_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = sorted(set(photo_ids))
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 900):
            q = select(t.library_photos).where(t.library_photos.c.id.in_(ids[start : start + 900]))
            out.update({r["id"]: dict(r) for r in conn.execute(q).mappings()})
        return out

    # ---- faces -------------------------------------------------------------------------------------
    def add_library_face(
        self,
        conn: Connection,
        *,
        library_id: int,
        photo_id: int,
        person_id: int | None,
        box: Sequence[float],
        landmarks: Sequence[Sequence[float]],
        quality: dict[str, float],
        det_score: float,
        blob: bytes,
        key_version: int,
    ) -> int:
        res = conn.execute(
            insert(t.library_faces).values(
                library_id=library_id,
                photo_id=photo_id,
                person_id=person_id,
                box_x1=float(box[0]),
                box_y1=float(box[1]),
                box_x2=float(box[2]),
                box_y2=float(box[3]),
                landmarks=json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in landmarks]),
                quality=json.dumps(quality),
                det_score=float(det_score),
                vector=blob,
                key_version=key_version,
                pinned=False,
                created_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])

    def add_library_crop(self, conn: Connection, **values: Any) -> None:
        conn.execute(insert(t.library_crops).values(**values))

    def library_crop(self, conn: Connection, face_id: int) -> dict[str, Any] | None:
        row = (
            conn.execute(select(t.library_crops).where(t.library_crops.c.face_id == face_id))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def iter_library_faces(self, conn: Connection, library_id: int) -> Iterator[list[dict[str, Any]]]:
        """Every face of a library (id, photo, person, pinned, template blob, key version), page by page."""
        f = t.library_faces.c
        last = 0
        while True:
            q = (
                select(f.id, f.photo_id, f.person_id, f.pinned, f.vector, f.key_version)
                .where(f.library_id == library_id, f.id > last)
                .order_by(f.id)
                .limit(FACE_PAGE)
            )
            rows = [dict(r) for r in conn.execute(q).mappings()]
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def library_face_rows(self, conn: Connection, library_id: int) -> list[tuple[int, int | None, bool]]:
        """(face id, person id, pinned) of every face of a library, in id order, without templates."""
        f = t.library_faces.c
        if conn.dialect.name == "sqlite":  # plain tuples from the driver, in this same transaction:
            # a million rows in a fraction of a second (SQLAlchemy's Row objects cost ~1 us each)
            raw = conn.connection.driver_connection
            sql = "SELECT id, person_id, pinned FROM library_faces WHERE library_id = ? ORDER BY id"
            rows = raw.execute(sql, (int(library_id),)).fetchall()  # type: ignore[union-attr]
        else:
            q = select(f.id, f.person_id, f.pinned).where(f.library_id == library_id).order_by(f.id)
            rows = conn.execute(q).tuples().all()
        return [(int(a), None if b is None else int(b), bool(c)) for a, b, c in rows]

    def library_face_blobs(
        self, conn: Connection, library_id: int, after: int
    ) -> Iterator[list[tuple[int, bytes, int]]]:
        """(face id, template blob, key version) of the faces with an id above ``after``, page by page."""
        f = t.library_faces.c
        last = after
        while True:
            q = (
                select(f.id, f.vector, f.key_version)
                .where(f.library_id == library_id, f.id > last)
                .order_by(f.id)
                .limit(FACE_PAGE)
            )
            rows = [(int(a), bytes(b), int(c)) for a, b, c in conn.execute(q)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def set_library_face_blob(self, conn: Connection, face_id: int, blob: bytes, key_version: int) -> None:
        conn.execute(
            update(t.library_faces)
            .where(t.library_faces.c.id == face_id)
            .values(vector=blob, key_version=key_version)
        )

    def library_crop_ids(self, conn: Connection, library_id: int) -> list[int]:
        q = select(t.library_crops.c.face_id).where(t.library_crops.c.library_id == library_id)
        return [int(r[0]) for r in conn.execute(q)]

    def set_library_crop_blob(self, conn: Connection, face_id: int, image: bytes, key_version: int) -> None:
        conn.execute(
            update(t.library_crops)
            .where(t.library_crops.c.face_id == face_id)
            .values(image=image, key_version=key_version)
        )

    def library_faces(self, conn: Connection, face_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = sorted(set(face_ids))
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 900):
            q = select(t.library_faces).where(t.library_faces.c.id.in_(ids[start : start + 900]))
            out.update({r["id"]: dict(r) for r in conn.execute(q).mappings()})
        return out

    def person_faces(self, conn: Connection, person_id: int) -> list[dict[str, Any]]:
        f = t.library_faces.c
        q = select(t.library_faces).where(f.person_id == person_id).order_by(f.id)
        return [dict(r) for r in conn.execute(q).mappings()]

    def set_face_person(
        self, conn: Connection, face_ids: Sequence[int], person_id: int | None, *, pinned: bool | None = None
    ) -> None:
        values: dict[str, Any] = {"person_id": person_id}
        if pinned is not None:
            values["pinned"] = pinned
        ids = list(face_ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            conn.execute(update(t.library_faces).where(t.library_faces.c.id.in_(chunk)).values(**values))

    def delete_library_faces(self, conn: Connection, face_ids: Sequence[int]) -> dict[str, int]:
        """Faces, their crops and every decision naming them; photos stay."""
        ids = list(face_ids)
        crops = 0
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            crops += conn.execute(
                delete(t.library_crops).where(t.library_crops.c.face_id.in_(chunk))
            ).rowcount
            d = t.library_decisions.c
            conn.execute(delete(t.library_decisions).where(d.face_id.in_(chunk)))
            conn.execute(
                update(t.library_people)
                .where(t.library_people.c.feature_face_id.in_(chunk))
                .values(feature_face_id=None)
            )
            conn.execute(delete(t.library_faces).where(t.library_faces.c.id.in_(chunk)))
        return {"faces": len(ids), "crops": crops}

    # ---- people ------------------------------------------------------------------------------------
    def add_person(self, conn: Connection, library_id: int) -> dict[str, Any]:
        """A new unnamed person, numbered with the library's next "person #N"."""
        lib = t.libraries.c
        number = int(conn.execute(select(lib.next_person).where(lib.id == library_id)).scalar_one())
        conn.execute(update(t.libraries).where(lib.id == library_id).values(next_person=number + 1))
        now = utcnow()
        res = conn.execute(
            insert(t.library_people).values(
                library_id=library_id, number=number, hidden=False, created_at=now, last_interaction_at=now
            )
        )
        return {"id": int(res.inserted_primary_key[0]), "number": number}

    def get_person(self, conn: Connection, library_id: int, number: int) -> dict[str, Any]:
        p = t.library_people.c
        row = (
            conn.execute(select(t.library_people).where(p.library_id == library_id, p.number == number))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError(f"no person #{number} in this library", code="person_not_found")
        return dict(row)

    def people_by_id(self, conn: Connection, person_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = sorted(set(person_ids))
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 900):
            q = select(t.library_people).where(t.library_people.c.id.in_(ids[start : start + 900]))
            out.update({r["id"]: dict(r) for r in conn.execute(q).mappings()})
        return out

    def list_people(
        self,
        conn: Connection,
        library_id: int,
        *,
        include_hidden: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """People with their face and photo counts, most faces first (then by number: a stable order
        to page through with ``limit`` and ``offset``)."""
        p, f = t.library_people, t.library_faces
        faces = func.count(f.c.id).label("faces")
        photos = func.count(func.distinct(f.c.photo_id)).label("photos")
        q = (
            select(p, faces, photos)
            .join_from(p, f, f.c.person_id == p.c.id, isouter=True)
            .where(p.c.library_id == library_id)
            .group_by(p.c.id)
            .order_by(faces.desc(), p.c.number)
        )
        if not include_hidden:
            q = q.where(p.c.hidden.is_(False))
        if limit is not None:
            q = q.limit(limit).offset(offset)
        elif offset:
            q = q.offset(offset)
        return [dict(r) for r in conn.execute(q).mappings()]

    def library_faces_upto(self, conn: Connection, library_id: int, last_id: int) -> int:
        """How many faces of the library have an id up to ``last_id`` (a snapshot's freshness check)."""
        f = t.library_faces.c
        q = (
            select(func.count())
            .select_from(t.library_faces)
            .where(f.library_id == library_id, f.id <= last_id)
        )
        return int(conn.execute(q).scalar_one())

    def person_face_qualities(
        self, conn: Connection, library_id: int, person_ids: Sequence[int]
    ) -> list[dict[str, Any]]:
        """(id, person_id, quality) of every face of ``person_ids`` (for their best face)."""
        f = t.library_faces.c
        out: list[dict[str, Any]] = []
        ids = list(person_ids)
        for start in range(0, len(ids), 900):
            q = select(f.id, f.person_id, f.quality).where(
                f.library_id == library_id, f.person_id.in_(ids[start : start + 900])
            )
            out += [dict(r) for r in conn.execute(q).mappings()]
        return out

    def update_person(self, conn: Connection, person_id: int, **values: Any) -> None:
        conn.execute(update(t.library_people).where(t.library_people.c.id == person_id).values(**values))

    def delete_people(self, conn: Connection, person_ids: Sequence[int]) -> None:
        ids = list(person_ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            conn.execute(delete(t.library_people).where(t.library_people.c.id.in_(chunk)))

    def empty_people(self, conn: Connection, library_id: int) -> list[int]:
        """Unnamed people left without a face (after a move, merge or recluster)."""
        p, f = t.library_people.c, t.library_faces.c
        used = select(f.person_id).where(f.library_id == library_id, f.person_id.is_not(None))
        q = select(p.id).where(p.library_id == library_id, p.consent_id.is_(None), p.id.not_in(used))
        return [int(r[0]) for r in conn.execute(q)]

    def all_library_people(self, conn: Connection) -> list[dict[str, Any]]:
        """Every person of every library, with the library's retention and consent dates (if named)."""
        p, lib, k = t.library_people.c, t.libraries.c, t.consents.c
        q = (
            select(
                p.id,
                p.number,
                p.library_id,
                p.consent_id,
                p.created_at,
                p.last_interaction_at,
                lib.name.label("library"),
                lib.retention_days,
                k.expires_at,
                k.withdrawn_at,
            )
            .join_from(t.library_people, t.libraries, p.library_id == lib.id)
            .join(t.consents, p.consent_id == k.id, isouter=True)
        )
        return [dict(r) for r in conn.execute(q).mappings()]

    def delete_consent(self, conn: Connection, consent_id: int) -> None:
        """A library person's consent record, erased with the person (no subject refers to it)."""
        conn.execute(delete(t.consents).where(t.consents.c.id == consent_id))

    # ---- decisions ---------------------------------------------------------------------------------
    def add_decision(self, conn: Connection, library_id: int, kind: str, actor: str, **values: Any) -> None:
        conn.execute(
            insert(t.library_decisions).values(
                library_id=library_id, kind=kind, actor=actor, at=utcnow(), **values
            )
        )

    def not_person_pairs(self, conn: Connection, library_id: int) -> set[tuple[int, int]]:
        """(face id, person id) pairs a person ruled out by hand."""
        d = t.library_decisions.c
        q = select(d.face_id, d.person_id).where(d.library_id == library_id, d.kind == "not_person")
        return {(int(a), int(b)) for a, b in conn.execute(q) if a is not None and b is not None}

    def forget_person_decisions(self, conn: Connection, person_id: int) -> None:
        d = t.library_decisions.c
        conn.execute(
            delete(t.library_decisions).where((d.person_id == person_id) | (d.other_person_id == person_id))
        )

    def touch_person(self, conn: Connection, person_id: int, at: datetime | None = None) -> None:
        self.update_person(conn, person_id, last_interaction_at=at or utcnow())
