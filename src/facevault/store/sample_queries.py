"""Queries on images, samples (protected templates) and their face crops: the ``SampleQueries`` part
of ``Store`` (store/database.py). Every method takes the connection of the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update

from ..clock import utcnow
from . import schema as t


@dataclass
class SampleHit:
    sample_id: int
    subject_id: int
    subject_name: str
    external_id: str | None
    image_source: str
    image_sha256: str
    box: tuple[float, float, float, float]
    blob: bytes  # the protected template as stored
    key_version: int
    vector: np.ndarray | None = None  # filled in by the service once the template is opened


class SampleQueries:
    """Images, samples and face crops (mixed into ``Store``)."""

    # ---- images and samples -----------------------------------------------------------------------
    def image_by_sha(self, conn: Connection, collection_id: int, sha256: str) -> dict[str, Any] | None:
        row = (
            conn.execute(
                select(t.images).where(t.images.c.collection_id == collection_id, t.images.c.sha256 == sha256)
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def image_shas(self, conn: Connection, collection_id: int) -> set[str]:
        """The SHA-256 of every image of a collection: the kept photo copies that have an owner."""
        q = select(t.images.c.sha256).where(t.images.c.collection_id == collection_id)
        return {str(r[0]) for r in conn.execute(q)}

    def add_image(
        self, conn: Connection, collection_id: int, sha256: str, source: str, w: int, h: int
    ) -> int:
        res = conn.execute(
            insert(t.images).values(
                collection_id=collection_id,
                sha256=sha256,
                source=source,
                width=w,
                height=h,
                created_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])

    def name_images(self, conn: Connection, collection_id: int, names: dict[int, str]) -> int:
        """Record the uploaded file name (``images.original_name``) of the image of each sample in
        ``names`` (sample id -> name), only where the sample is still in ``collection_id`` and its image
        has no name yet; returns how many image rows were named. A sample erased meanwhile names nothing."""
        named = 0
        s, i = t.samples.c, t.images.c
        for sample_id, name in names.items():
            image_id = select(s.image_id).where(s.id == int(sample_id), s.collection_id == collection_id)
            res = conn.execute(
                update(t.images)
                .where(i.id == image_id.scalar_subquery(), i.original_name.is_(None))
                .values(original_name=name)
            )
            named += int(res.rowcount)
        return named

    def original_names(self, conn: Connection, sample_ids: Sequence[int]) -> dict[int, str | None]:
        """The uploaded file name of each sample's image (None: enrolled from a path, or before 0008)."""
        if not sample_ids:
            return {}
        s, i = t.samples.c, t.images.c
        q = (
            select(s.id, i.original_name)
            .join_from(t.samples, t.images, s.image_id == i.id)
            .where(s.id.in_([int(x) for x in sample_ids]))
        )
        return {int(r[0]): r[1] for r in conn.execute(q)}

    def add_sample(
        self,
        conn: Connection,
        *,
        collection_id: int,
        subject_id: int,
        image_id: int,
        model_id: str,
        box: Sequence[float],
        quality: dict[str, float],
        blob: bytes,
        key_version: int,
    ) -> int:
        res = conn.execute(
            insert(t.samples).values(
                collection_id=collection_id,
                subject_id=subject_id,
                image_id=image_id,
                model_id=model_id,
                box_x1=float(box[0]),
                box_y1=float(box[1]),
                box_x2=float(box[2]),
                box_y2=float(box[3]),
                quality=json.dumps(quality, sort_keys=True),
                vector=blob,
                key_version=key_version,
                created_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])

    def sample_hits(self, conn: Connection, sample_ids: Sequence[int]) -> dict[int, SampleHit]:
        """Sample rows (with subject and image) for index candidates; ids no longer in the store are
        simply absent, so a stale index can never resurrect an erased face."""
        if not sample_ids:
            return {}
        s, sub, i = t.samples.c, t.subjects.c, t.images.c
        rows = conn.execute(
            select(
                s.id,
                s.subject_id,
                sub.name,
                sub.external_id,
                i.source,
                i.sha256,
                s.box_x1,
                s.box_y1,
                s.box_x2,
                s.box_y2,
                s.vector,
                s.key_version,
            )
            .join_from(t.samples, t.subjects, s.subject_id == sub.id)
            .join(t.images, s.image_id == i.id)
            .where(s.id.in_([int(x) for x in sample_ids]))
        ).all()
        return {
            r[0]: SampleHit(
                sample_id=r[0],
                subject_id=r[1],
                subject_name=r[2],
                external_id=r[3],
                image_source=r[4],
                image_sha256=r[5],
                box=(r[6], r[7], r[8], r[9]),
                blob=r[10],
                key_version=r[11],
            )
            for r in rows
        }

    def iter_sample_blobs(
        self, conn: Connection, collection_id: int | None = None, batch: int = 10_000
    ) -> Iterator[list[Any]]:
        """Batches of (id, collection_id, blob, key_version) rows in id order: for index rebuilds
        (one collection) and key rotation (all)."""
        s = t.samples.c
        last = 0
        while True:
            q = select(s.id, s.collection_id, s.vector, s.key_version).where(s.id > last)
            if collection_id is not None:
                q = q.where(s.collection_id == collection_id)
            rows = conn.execute(q.order_by(s.id).limit(batch)).all()
            if not rows:
                return
            yield list(rows)
            last = int(rows[-1][0])

    def update_sample_blob(self, conn: Connection, sample_id: int, blob: bytes, key_version: int) -> None:
        conn.execute(
            update(t.samples).where(t.samples.c.id == sample_id).values(vector=blob, key_version=key_version)
        )

    def update_sample_template(
        self, conn: Connection, sample_id: int, *, blob: bytes, model_id: str, key_version: int
    ) -> None:
        """A sample's template made by another model (collection migration)."""
        conn.execute(
            update(t.samples)
            .where(t.samples.c.id == sample_id)
            .values(vector=blob, model_id=model_id, key_version=key_version)
        )

    # ---- face crops (collections with keep_crops) ---------------------------------------------------
    def add_crop(
        self,
        conn: Connection,
        *,
        sample_id: int,
        collection_id: int,
        media_type: str,
        size: tuple[int, int],
        box: Sequence[float],
        blob: bytes,
        key_version: int,
    ) -> None:
        conn.execute(
            insert(t.sample_crops).values(
                sample_id=sample_id,
                collection_id=collection_id,
                media_type=media_type,
                width=int(size[0]),
                height=int(size[1]),
                box_x1=float(box[0]),
                box_y1=float(box[1]),
                box_x2=float(box[2]),
                box_y2=float(box[3]),
                image=blob,
                key_version=key_version,
                created_at=utcnow(),
            )
        )

    def crops_page(
        self, conn: Connection, collection_id: int | None, after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` crop rows with sample id above ``after``, in sample id order (one collection,
        or all with None)."""
        c = t.sample_crops.c
        q = select(t.sample_crops).where(c.sample_id > after)
        if collection_id is not None:
            q = q.where(c.collection_id == collection_id)
        return [dict(r) for r in conn.execute(q.order_by(c.sample_id).limit(limit)).mappings()]

    def iter_crops(
        self, conn: Connection, collection_id: int | None = None, batch: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Batches of crop rows in sample id order, within the caller's transaction (key rotation)."""
        last = 0
        while rows := self.crops_page(conn, collection_id, last, batch):
            yield rows
            last = int(rows[-1]["sample_id"])

    def update_crop_blob(self, conn: Connection, sample_id: int, blob: bytes, key_version: int) -> None:
        conn.execute(
            update(t.sample_crops)
            .where(t.sample_crops.c.sample_id == sample_id)
            .values(image=blob, key_version=key_version)
        )

    def samples_without_crop(self, conn: Connection, collection_id: int) -> list[int]:
        s, c = t.samples.c, t.sample_crops.c
        q = (
            select(s.id)
            .select_from(t.samples.outerjoin(t.sample_crops, c.sample_id == s.id))
            .where(s.collection_id == collection_id, c.sample_id.is_(None))
            .order_by(s.id)
        )
        return [int(r[0]) for r in conn.execute(q)]

    def delete_crops(self, conn: Connection, sample_ids: Sequence[int]) -> int:
        """Delete the crops of these samples (before the samples themselves: the foreign key insists)."""
        if not sample_ids:
            return 0
        ids = [int(i) for i in sample_ids]
        return int(conn.execute(delete(t.sample_crops).where(t.sample_crops.c.sample_id.in_(ids))).rowcount)

    def delete_collection_crops(self, conn: Connection, collection_id: int) -> int:
        q = delete(t.sample_crops).where(t.sample_crops.c.collection_id == collection_id)
        return int(conn.execute(q).rowcount)

    def sample_collection(self, conn: Connection, sample_id: int) -> int | None:
        return conn.execute(select(t.samples.c.collection_id).where(t.samples.c.id == sample_id)).scalar()

    def count_samples(self, conn: Connection, collection_id: int) -> int:
        q = select(func.count()).select_from(t.samples).where(t.samples.c.collection_id == collection_id)
        return int(conn.execute(q).scalar_one())

    def sample_ids(self, conn: Connection, collection_id: int) -> set[int]:
        return {
            r[0]
            for r in conn.execute(select(t.samples.c.id).where(t.samples.c.collection_id == collection_id))
        }

    def models_in_collection(self, conn: Connection, collection_id: int) -> set[str]:
        return {
            r[0]
            for r in conn.execute(
                select(t.samples.c.model_id).where(t.samples.c.collection_id == collection_id).distinct()
            )
        }
