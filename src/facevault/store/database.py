"""Data access for the vault. Every method takes the connection of the caller's transaction, so the
service decides the transaction boundary (one use case = one transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    update,
)

from ..clock import utcnow
from ..errors import ConfigError, ConflictError, IntegrityError, NotFoundError
from . import schema as t

READ_ONLY = "facevault_read_only"


def _begin_sqlite(conn: Connection) -> None:
    # Writers serialise at BEGIN IMMEDIATE, so the audit chain's "read last hash, append" cannot
    # interleave; a read transaction takes a deferred BEGIN (a consistent WAL snapshot, no write lock).
    conn.exec_driver_sql("BEGIN" if conn.info.get(READ_ONLY) else "BEGIN IMMEDIATE")


def _begin_postgres(conn: Connection) -> None:
    if conn.info.get(READ_ONLY):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (below) instead of pysqlite's deferred BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not just unlinked
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# One transaction at a time per vault database on PostgreSQL, as BEGIN IMMEDIATE gives on SQLite: the
# audit chain's "read the last hash, append" can never interleave. A transaction-level advisory lock is
# released by COMMIT/ROLLBACK, and (like SQLite's busy_timeout) waits at most lock_timeout.
PG_LOCK_KEY = 0x66616365_7661756C & 0x7FFFFFFFFFFFFFFF  # "facevaul"
# Tables an erasure deletes from: VACUUMed after an erase on PostgreSQL (see ``checkpoint``).
ERASURE_TABLES = (
    "sample_crops",
    "samples",
    "images",
    "subjects",
    "consents",
    "review_candidates",
    "review_decisions",
)
REMEMBERED_URL_FILE = "store.url"


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the ``postgres`` extra), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL without its password: what is shown, logged and remembered."""
    return make_url(url).render_as_string(hide_password=True).replace(":***@", "@")


def _same_database(a: str, b: str) -> bool:
    ua, ub = make_url(normalize_url(a)), make_url(normalize_url(b))
    return ua.set(password=None) == ub.set(password=None)


def resolve_url(settings: Any, *, create: bool = False) -> str:
    """The store URL of a vault home. The database is chosen at ``init`` (``--db`` / ``FACEVAULT_DB``;
    default SQLite at <home>/facevault.db) and remembered, without its password, in
    <home>/store.url; later commands open that database, and naming a different one is an error."""
    home: Path = settings.home
    pointer = home / REMEMBERED_URL_FILE
    wanted: str = (settings.db or "").strip()
    remembered = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    if remembered:
        if wanted and not _same_database(wanted, remembered):
            raise ConfigError(f"this vault's store is {remembered}, not {redact_url(wanted)} (see {pointer})")
        return normalize_url(wanted or remembered)
    default = f"sqlite:///{settings.db_path}"
    if not wanted or _same_database(wanted, default):
        return default
    if settings.db_path.exists():
        raise ConfigError(f"this vault's store is SQLite at {settings.db_path}, not {redact_url(wanted)}")
    if create:
        home.mkdir(parents=True, exist_ok=True)
        pointer.write_text(redact_url(normalize_url(wanted)) + "\n", encoding="utf-8")
        pointer.chmod(0o600)
    return normalize_url(wanted)


class Store:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            # Timestamps come back in UTC (the audit chain hashes their ISO form); waits are bounded.
            kwargs["connect_args"] = {"options": "-c timezone=UTC -c lock_timeout=30000"}
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _begin_sqlite)
        elif self.dialect == "postgresql":
            event.listen(self.engine, "begin", _begin_postgres)

    @classmethod
    def for_settings(cls, settings: Any, *, create: bool = False) -> Store:
        return cls(resolve_url(settings, create=create))

    @staticmethod
    def exists_for(settings: Any) -> bool:
        """Whether the vault home names a store that may exist, without creating a database file."""
        url = make_url(resolve_url(settings))
        if url.get_backend_name() == "sqlite":
            return bool(url.database) and url.database != ":memory:" and Path(url.database).exists()
        return True  # a server database: ``is_initialised`` tells

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    # ---- lifecycle -------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the schema, or bring an existing one up to date, by running the Alembic migrations
        (store/migrations) to head. A database made before migrations existed is stamped at 0001."""
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import inspect

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.begin() as conn:  # one transaction: the lock above keeps a concurrent init out
            cfg.attributes["connection"] = conn
            insp = inspect(conn)
            if insp.has_table("collections") and not insp.has_table("alembic_version"):
                command.stamp(cfg, "0001")
            command.upgrade(cfg, "head")
            if conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version")).first() is None:
                conn.execute(insert(t.meta).values(key="schema_version", value=str(t.SCHEMA_VERSION)))
            else:
                conn.execute(
                    update(t.meta).where(t.meta.c.key == "schema_version").values(value=str(t.SCHEMA_VERSION))
                )

    def check_schema(self) -> None:
        """Refuse a store whose schema is older or newer than this code's (``create_schema`` upgrades)."""
        with self.begin() as conn:
            stored = self.get_meta(conn, "schema_version")
        have = int(stored) if stored and stored.isdigit() else 0
        if have < t.SCHEMA_VERSION:
            raise ConfigError(
                f"the store {self.display_url} has schema version {have or 'unknown'}, this facevault needs "
                f"{t.SCHEMA_VERSION}: run `facevault init` with the same --home (and --db) to upgrade it",
                code="schema_outdated",
            )
        if have > t.SCHEMA_VERSION:
            raise ConfigError(
                f"the store {self.display_url} has schema version {have}, made by a newer facevault than "
                f"this one (schema version {t.SCHEMA_VERSION})",
                code="schema_too_new",
            )

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def is_initialised(self) -> bool:
        from sqlalchemy import inspect

        return inspect(self.engine).has_table("collections")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: serialised with every other writer of this database."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent snapshot, without the writers' lock (use cases that
        only read take this one)."""
        with self.engine.connect() as conn:
            conn.info[READ_ONLY] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop(READ_ONLY, None)

    # ---- collections -----------------------------------------------------------------------------
    def create_collection(
        self,
        conn: Connection,
        name: str,
        model_id: str,
        dim: int,
        *,
        purpose: str | None = None,
        legal_basis: str | None = None,
        retention_days: int = 1095,
        keep_crops: bool = False,
    ) -> dict[str, Any]:
        if conn.execute(select(t.collections.c.id).where(t.collections.c.name == name)).first():
            raise ConflictError(f"collection {name!r} already exists", code="collection_exists")
        res = conn.execute(
            insert(t.collections).values(
                name=name,
                model_id=model_id,
                dim=dim,
                created_at=utcnow(),
                purpose=purpose,
                legal_basis=legal_basis,
                retention_days=retention_days,
                keep_crops=keep_crops,
            )
        )
        return self.get_collection(conn, name) | {"id": res.inserted_primary_key[0]}

    def get_collection(self, conn: Connection, name: str) -> dict[str, Any]:
        row = conn.execute(select(t.collections).where(t.collections.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no collection named {name!r}", code="collection_not_found")
        return dict(row)

    def list_collections(self, conn: Connection) -> list[dict[str, Any]]:
        subj = (
            select(func.count())
            .select_from(t.subjects)
            .where(t.subjects.c.collection_id == t.collections.c.id)
            .scalar_subquery()
        )
        samp = (
            select(func.count())
            .select_from(t.samples)
            .where(t.samples.c.collection_id == t.collections.c.id)
            .scalar_subquery()
        )
        rows = conn.execute(
            select(t.collections, subj.label("subjects"), samp.label("samples")).order_by(
                t.collections.c.name
            )
        ).mappings()
        return [dict(r) for r in rows]

    def update_collection(self, conn: Connection, collection_id: int, **values: Any) -> None:
        conn.execute(update(t.collections).where(t.collections.c.id == collection_id).values(**values))

    def delete_collection(self, conn: Connection, collection_id: int) -> dict[str, int]:
        counts = {
            "crops": self.delete_collection_crops(conn, collection_id),
            "samples": conn.execute(
                delete(t.samples).where(t.samples.c.collection_id == collection_id)
            ).rowcount,
            "images": conn.execute(
                delete(t.images).where(t.images.c.collection_id == collection_id)
            ).rowcount,
        }
        consent_ids = [
            r[0]
            for r in conn.execute(
                select(t.subjects.c.consent_id).where(t.subjects.c.collection_id == collection_id)
            )
        ]
        counts["subjects"] = conn.execute(
            delete(t.subjects).where(t.subjects.c.collection_id == collection_id)
        ).rowcount
        if consent_ids:
            conn.execute(delete(t.consents).where(t.consents.c.id.in_(consent_ids)))
        conn.execute(delete(t.collections).where(t.collections.c.id == collection_id))
        return counts

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

    def find_subject(self, conn: Connection, collection_id: int, ref: str) -> dict[str, Any]:
        """A subject by id (``#12`` or ``12``), external id, or exact name (which must be unique)."""
        c = t.subjects.c
        base = select(t.subjects).where(c.collection_id == collection_id)
        key = ref[1:] if ref.startswith("#") else ref
        if key.isdigit():
            row = conn.execute(base.where(c.id == int(key))).mappings().first()
            if row is not None:
                return dict(row)
        row = conn.execute(base.where(c.external_id == ref)).mappings().first()
        if row is not None:
            return dict(row)
        rows = conn.execute(base.where(c.name == ref)).mappings().all()
        if len(rows) == 1:
            return dict(rows[0])
        if len(rows) > 1:
            ids = ", ".join(f"#{r['id']}" for r in rows)
            raise ConflictError(
                f"{len(rows)} subjects are named {ref!r} ({ids}); use the id", code="ambiguous"
            )
        raise NotFoundError(f"no subject {ref!r} in this collection", code="subject_not_found")

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

    def delete_subject(self, conn: Connection, subject: dict[str, Any]) -> dict[str, Any]:
        """Delete a subject, its samples, review records, consent record and the image records no other
        sample uses. Returns what went (sample ids for the index; image hashes and counts for the
        erasure receipt)."""
        sid = subject["id"]
        consent = self.get_consent(conn, subject["consent_id"])
        removed_images: list[str] = []
        sample_ids = [r[0] for r in conn.execute(select(t.samples.c.id).where(t.samples.c.subject_id == sid))]
        image_ids = {
            r[0] for r in conn.execute(select(t.samples.c.image_id).where(t.samples.c.subject_id == sid))
        }
        crops = self.delete_crops(conn, sample_ids)
        conn.execute(delete(t.samples).where(t.samples.c.subject_id == sid))
        conn.execute(
            delete(t.review_decisions).where(
                t.review_decisions.c.candidate_id.in_(
                    select(t.review_candidates.c.id).where(t.review_candidates.c.subject_id == sid)
                )
            )
        )
        conn.execute(delete(t.review_candidates).where(t.review_candidates.c.subject_id == sid))
        if image_ids:
            still_used = {
                r[0]
                for r in conn.execute(select(t.samples.c.image_id).where(t.samples.c.image_id.in_(image_ids)))
            }
            orphan = image_ids - still_used
            if orphan:
                removed_images = [
                    r[0] for r in conn.execute(select(t.images.c.sha256).where(t.images.c.id.in_(orphan)))
                ]
                conn.execute(delete(t.images).where(t.images.c.id.in_(orphan)))
        conn.execute(delete(t.subjects).where(t.subjects.c.id == sid))
        conn.execute(delete(t.consents).where(t.consents.c.id == subject["consent_id"]))
        return {
            "sample_ids": sample_ids,
            "crops": crops,
            "image_sha256": sorted(removed_images),
            "consent_id": consent["id"],
            "consent_evidence_sha256": consent["evidence_sha256"],
        }

    def checkpoint(self) -> None:
        """After an erasure, make the deleted rows' bytes go away as far as the database allows.

        SQLite: fold the write-ahead log into the database file and truncate it, so erased pages do not
        linger in the WAL (secure_delete already zeroes them in the database file).

        PostgreSQL: a DELETE only marks row versions dead; ``VACUUM`` of the touched tables makes their
        space reusable (and removes index entries) but does not zero it, and the WAL, replicas and backups
        keep the old bytes until they are recycled. Templates are AES-GCM ciphertext under a key kept
        outside the database, so those leftovers are unreadable once the key is rotated away
        (``facevault keys rotate``). docs/SCALE.md says what to run for a stronger guarantee."""
        if self.dialect == "sqlite":
            raw = self.engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
            try:
                cur = raw.cursor()
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cur.close()
            finally:
                raw.close()
        elif self.dialect == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM " + ", ".join(ERASURE_TABLES))

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

    def counts(self, conn: Connection) -> dict[str, int]:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (
                ("collections", t.collections),
                ("subjects", t.subjects),
                ("samples", t.samples),
                ("crops", t.sample_crops),
                ("optouts", t.optouts),
                ("audit_entries", t.audit_log),
            )
        }

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

    def get_meta(self, conn: Connection, key: str) -> str | None:
        row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == key)).first()
        return None if row is None else str(row[0])

    def set_meta(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(select(t.meta.c.key).where(t.meta.c.key == key)).first():
            conn.execute(update(t.meta).where(t.meta.c.key == key).values(value=value))
        else:
            conn.execute(insert(t.meta).values(key=key, value=value))
