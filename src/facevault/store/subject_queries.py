"""Queries on consent records, subjects, opt-outs and human review: the ``SubjectQueries`` part of
``Store`` (store/database.py). Every method takes the connection of the caller's transaction. Erasing a
subject spans samples, images and crops too, so ``Store.delete_subject`` stays with ``Store``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..clock import utcnow
from ..errors import ConflictError, InputError, IntegrityError, NotFoundError
from . import schema as t
from .refs import MAX_ID, parse_subject_ref, shown


class SubjectQueries:
    """Consent records, subjects, opt-outs and review candidates/decisions (mixed into ``Store``)."""

    # ---- consent and subjects -------------------------------------------------------------------
    def add_consent(self, conn: Connection, **values: Any) -> int:
        return int(conn.execute(insert(t.consents).values(**values)).inserted_primary_key[0])

    def get_consent(self, conn: Connection, consent_id: int) -> dict[str, Any]:
        row = conn.execute(select(t.consents).where(t.consents.c.id == consent_id)).mappings().first()
        if row is None:
            raise IntegrityError(f"consent record {consent_id} is missing")
        return dict(row)

    def add_subject(
        self,
        conn: Connection,
        collection_id: int,
        name: str,
        external_id: str | None,
        consent_id: int,
    ) -> int:
        if (
            external_id is not None
            and conn.execute(
                select(t.subjects.c.id).where(
                    t.subjects.c.collection_id == collection_id, t.subjects.c.external_id == external_id
                )
            ).first()
        ):
            raise ConflictError(f"external id {external_id!r} is already used in this collection")
        res = conn.execute(
            insert(t.subjects).values(
                collection_id=collection_id,
                name=name,
                external_id=external_id,
                consent_id=consent_id,
                created_at=utcnow(),
                last_interaction_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])

    def touch_subject(self, conn: Connection, subject_id: int) -> None:
        conn.execute(
            update(t.subjects).where(t.subjects.c.id == subject_id).values(last_interaction_at=utcnow())
        )

    def withdraw_consent(self, conn: Connection, consent_id: int) -> None:
        conn.execute(update(t.consents).where(t.consents.c.id == consent_id).values(withdrawn_at=utcnow()))

    def all_subjects(self, conn: Connection) -> list[dict[str, Any]]:
        """Every subject with its collection's retention and its consent dates (for retention sweeps)."""
        s, c, k = t.subjects.c, t.collections.c, t.consents.c
        rows = conn.execute(
            select(
                s.id,
                s.name,
                s.collection_id,
                s.consent_id,
                s.created_at,
                s.last_interaction_at,
                c.name.label("collection"),
                c.retention_days,
                k.expires_at,
                k.withdrawn_at,
            )
            .join_from(t.subjects, t.collections, s.collection_id == c.id)
            .join(t.consents, s.consent_id == k.id)
        ).mappings()
        return [dict(r) for r in rows]

    def find_subject(self, conn: Connection, collection_id: int, ref: str | int) -> dict[str, Any]:
        """The one subject ``ref`` names in this collection, in the syntax of ``parse_subject_ref``:
        ``#12`` / ``id:12`` (the id), ``ext:E-12`` (the external id), ``name:Ann Lee`` (the exact name),
        or a bare reference, which must name exactly one subject by any of the three: a reference that
        two subjects answer to (``25`` when #25 exists and another subject's external id is ``25``) is
        refused (``ambiguous``), never guessed. Every use case that names a subject comes here."""
        parsed = parse_subject_ref(ref)
        c = t.subjects.c
        base = select(t.subjects).where(c.collection_id == collection_id)
        matches: dict[int, tuple[dict[str, Any], list[str]]] = {}

        def add(rows: Any, reading: str) -> None:
            for row in rows:
                matches.setdefault(int(row["id"]), (dict(row), []))[1].append(reading)

        if parsed.subject_id is not None and parsed.kind in ("id", "any"):
            add(conn.execute(base.where(c.id == parsed.subject_id)).mappings(), "id")
        if parsed.kind in ("external_id", "any"):
            add(conn.execute(base.where(c.external_id == parsed.value)).mappings(), "external id")
        if parsed.kind in ("name", "any"):
            add(conn.execute(base.where(c.name == parsed.value)).mappings(), "name")
        if len(matches) == 1:
            return next(iter(matches.values()))[0]
        if matches:
            ids = sorted(matches)
            which = ", ".join(f"#{i} (by {' and '.join(matches[i][1])})" for i in ids)
            raise ConflictError(
                f"{len(ids)} subjects answer to {shown(ref)}: {which}; say which with "
                "id:<id>, ext:<external id> or name:<name>",
                code="ambiguous",
                details={"subject_ids": ids},
            )
        if parsed.numeric_but_not_an_id:
            raise InputError(
                f"{shown(ref)} is not a subject id (ids are 0 to {MAX_ID}) and names no subject",
                code="invalid_subject_ref",
            )
        raise NotFoundError(f"no subject {shown(ref)} in this collection", code="subject_not_found")

    def list_subjects(self, conn: Connection, collection_id: int) -> list[dict[str, Any]]:
        count = (
            select(func.count())
            .select_from(t.samples)
            .where(t.samples.c.subject_id == t.subjects.c.id)
            .scalar_subquery()
        )
        rows = conn.execute(
            select(t.subjects, count.label("samples"))
            .where(t.subjects.c.collection_id == collection_id)
            .order_by(t.subjects.c.id)
        ).mappings()
        return [dict(r) for r in rows]

    def subject_samples(self, conn: Connection, subject_id: int) -> list[dict[str, Any]]:
        s, i = t.samples.c, t.images.c
        rows = conn.execute(
            select(
                s.id,
                s.model_id,
                s.box_x1,
                s.box_y1,
                s.box_x2,
                s.box_y2,
                s.quality,
                s.created_at,
                i.source,
                i.sha256,
                i.original_name,
            )
            .join_from(t.samples, t.images, s.image_id == i.id)
            .where(s.subject_id == subject_id)
            .order_by(s.id)
        ).mappings()
        out = []
        for r in rows:
            d = dict(r)
            d["quality"] = json.loads(d["quality"])
            out.append(d)
        return out

    # ---- opt-outs ----------------------------------------------------------------------------------
    def add_optout(self, conn: Connection, **values: Any) -> int:
        return int(
            conn.execute(insert(t.optouts).values(created_at=utcnow(), **values)).inserted_primary_key[0]
        )

    def optouts_for(
        self, conn: Connection, model_id: str | None, collection: str | None
    ) -> list[dict[str, Any]]:
        """Opt-outs made by ``model_id`` (None: by any model) that apply to ``collection`` (None: any)."""
        q = select(t.optouts)
        if model_id is not None:
            q = q.where(t.optouts.c.model_id == model_id)
        if collection is not None:
            q = q.where(t.optouts.c.scope.in_([collection, "*"]))
        return [dict(r) for r in conn.execute(q).mappings()]

    def pending_optouts(self, conn: Connection) -> list[dict[str, Any]]:
        """Opt-outs whose erasures a crash interrupted (``finished_at`` NULL), oldest first."""
        q = select(t.optouts).where(t.optouts.c.finished_at.is_(None)).order_by(t.optouts.c.id)
        return [dict(r) for r in conn.execute(q).mappings()]

    def finish_optouts(self, conn: Connection, optout_ids: list[int]) -> None:
        if optout_ids:
            conn.execute(update(t.optouts).where(t.optouts.c.id.in_(optout_ids)).values(finished_at=utcnow()))

    def all_optouts(self, conn: Connection) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(select(t.optouts)).mappings()]

    def update_optout_blob(self, conn: Connection, optout_id: int, blob: bytes, key_version: int) -> None:
        conn.execute(
            update(t.optouts).where(t.optouts.c.id == optout_id).values(vector=blob, key_version=key_version)
        )

    # ---- human review ------------------------------------------------------------------------------
    def add_review_candidate(self, conn: Connection, **values: Any) -> int:
        res = conn.execute(insert(t.review_candidates).values(created_at=utcnow(), **values))
        return int(res.inserted_primary_key[0])

    def review_candidates(self, conn: Connection, case_id: str | None = None) -> list[dict[str, Any]]:
        q = select(t.review_candidates).order_by(t.review_candidates.c.id)
        if case_id is not None:
            q = q.where(t.review_candidates.c.case_id == case_id)
        return [dict(r) for r in conn.execute(q).mappings()]

    def review_decisions(self, conn: Connection, candidate_ids: Sequence[int]) -> list[dict[str, Any]]:
        if not candidate_ids:
            return []
        q = select(t.review_decisions).where(t.review_decisions.c.candidate_id.in_(list(candidate_ids)))
        return [dict(r) for r in conn.execute(q.order_by(t.review_decisions.c.id)).mappings()]

    def add_review_decision(self, conn: Connection, **values: Any) -> int:
        c = t.review_decisions.c
        existing = conn.execute(
            select(c.id).where(c.candidate_id == values["candidate_id"], c.reviewer == values["reviewer"])
        ).first()
        if existing is not None:
            raise ConflictError(
                f"{values['reviewer']} has already decided on this candidate; a second reviewer must decide",
                code="already_reviewed",
            )
        return int(
            conn.execute(insert(t.review_decisions).values(at=utcnow(), **values)).inserted_primary_key[0]
        )
