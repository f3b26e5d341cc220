"""Queries behind the compatibility surface (service/compat_*.py): key bindings (``compat_keys``),
faces listed page by page, samples removed without their subject, subjects renamed. Every function
takes the connection of the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from . import schema as t


# ---- key bindings -----------------------------------------------------------------------------------
def add_binding(conn: Connection, **values: Any) -> None:
    conn.execute(insert(t.compat_keys).values(**values))


def binding_for(conn: Connection, api_key_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(t.compat_keys).where(t.compat_keys.c.api_key_id == api_key_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)


def bindings(conn: Connection) -> dict[int, dict[str, Any]]:
    """Every binding by its API key's id (for key listings)."""
    return {int(r["api_key_id"]): dict(r) for r in conn.execute(select(t.compat_keys)).mappings()}


# ---- faces (samples) ------------------------------------------------------------------------------------
def faces_page(
    conn: Connection, collection_id: int, subject_id: int | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of a collection's samples (id, subject id and name), oldest first, and how many there
    are in all; only ``subject_id``'s when given."""
    s, subj = t.samples.c, t.subjects.c
    where = [s.collection_id == collection_id]
    if subject_id is not None:
        where.append(s.subject_id == subject_id)
    total = int(conn.execute(select(func.count()).select_from(t.samples).where(*where)).scalar_one())
    rows = conn.execute(
        select(s.id.label("sample_id"), s.subject_id, subj.name)
        .join_from(t.samples, t.subjects, s.subject_id == subj.id)
        .where(*where)
        .order_by(s.id)
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows], total


def samples_of(conn: Connection, collection_id: int, subject_id: int | None = None) -> list[dict[str, Any]]:
    """The samples of a collection (of one subject when given): id and subject id."""
    s = t.samples.c
    query = select(s.id.label("sample_id"), s.subject_id).where(s.collection_id == collection_id)
    if subject_id is not None:
        query = query.where(s.subject_id == subject_id)
    return [dict(r) for r in conn.execute(query.order_by(s.id)).mappings()]


def delete_samples(conn: Connection, sample_ids: Sequence[int]) -> dict[str, Any]:
    """Delete samples (their crops too) and the image records no other sample uses; the subject and its
    consent record stay. Returns the image hashes and crop count that went."""
    ids = [int(i) for i in sample_ids]
    if not ids:
        return {"crops": 0, "image_sha256": []}
    s = t.samples.c
    image_ids = {r[0] for r in conn.execute(select(s.image_id).where(s.id.in_(ids)))}
    crops = conn.execute(delete(t.sample_crops).where(t.sample_crops.c.sample_id.in_(ids))).rowcount
    conn.execute(delete(t.samples).where(s.id.in_(ids)))
    removed: list[str] = []
    if image_ids:
        still_used = {r[0] for r in conn.execute(select(s.image_id).where(s.image_id.in_(image_ids)))}
        orphan = image_ids - still_used
        if orphan:
            removed = [r[0] for r in conn.execute(select(t.images.c.sha256).where(t.images.c.id.in_(orphan)))]
            conn.execute(delete(t.images).where(t.images.c.id.in_(orphan)))
    # enroll-batch's records of these samples keep their outcome, not the image path or hash.
    conn.execute(
        update(t.batch_rows)
        .where(t.batch_rows.c.sample_id.in_(ids))
        .values(image=None, image_sha256=None, message=None, sample_id=None)
    )
    return {"crops": int(crops or 0), "image_sha256": sorted(removed)}


def rename_subject(conn: Connection, subject_id: int, name: str) -> None:
    conn.execute(update(t.subjects).where(t.subjects.c.id == subject_id).values(name=name))
