"""Data access for the vault: ``Store``, its engine and transactions (one writer at a time), the
schema lifecycle, collections, erasure, counts and meta. The per-table queries are mixed in from
store/subject_queries.py (consent, subjects, opt-outs, review) and store/sample_queries.py (images,
samples, crops); store URLs are store/urls.py. Every method takes the connection of the caller's
transaction, so the service decides the transaction boundary (one use case = one transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from ..config import DEFAULT_RETENTION_DAYS
from ..errors import ConfigError, ConflictError, NotFoundError
from . import schema as t
from .library_queries import LibraryQueries
from .sample_queries import SampleHit, SampleQueries
from .subject_queries import SubjectQueries
from .urls import REMEMBERED_URL_FILE, normalize_url, redact_url, resolve_url

__all__ = [
    "ERASURE_TABLES",
    "PG_LOCK_KEY",
    "READ_ONLY",
    "REMEMBERED_URL_FILE",
    "SampleHit",
    "Store",
    "normalize_url",
    "redact_url",
    "resolve_url",
    "utcnow",
]

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
    "library_crops",
    "library_faces",
    "library_people",
)


class Store(SubjectQueries, SampleQueries, LibraryQueries):
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
        retention_days: int = DEFAULT_RETENTION_DAYS,
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

    def collection_by_id(self, conn: Connection, collection_id: int) -> dict[str, Any] | None:
        row = (
            conn.execute(select(t.collections).where(t.collections.c.id == collection_id)).mappings().first()
        )
        return None if row is None else dict(row)

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

    # ---- erasure (deletes that span tables) ----------------------------------------------------
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
        # enroll-batch's per-row records keep the row's outcome (a re-run still skips it) but nothing that
        # names the person: the image path (often the person's name), its hash, the message.
        conn.execute(
            update(t.batch_rows)
            .where(t.batch_rows.c.subject_id == sid)
            .values(image=None, image_sha256=None, message=None, subject_id=None, sample_id=None)
        )
        conn.execute(delete(t.subjects).where(t.subjects.c.id == sid))
        conn.execute(delete(t.consents).where(t.consents.c.id == subject["consent_id"]))
        return {
            "sample_ids": sample_ids,
            "crops": crops,
            "image_sha256": sorted(removed_images),
            "consent_id": consent["id"],
            "consent_evidence_sha256": consent["evidence_sha256"],
        }

    # ---- erasures a crash may interrupt -----------------------------------------------------------
    def add_pending_erasure(
        self,
        conn: Connection,
        collection_id: int,
        subject_id: int,
        sample_ids: list[int],
        image_sha256: list[str],
    ) -> int:
        """Record, in the erasure's own transaction, what must still go once it commits: the index
        entries of ``sample_ids`` and the kept photo copies of ``image_sha256``."""
        res = conn.execute(
            insert(t.pending_erasures).values(
                collection_id=collection_id,
                subject_id=subject_id,
                sample_ids=json.dumps(sorted(int(i) for i in sample_ids)),
                image_sha256=json.dumps(sorted(image_sha256)),
                created_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])

    def pending_erasures(self, conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(select(t.pending_erasures).order_by(t.pending_erasures.c.id)).mappings()
        out = []
        for r in rows:
            d = dict(r)
            d["sample_ids"] = [int(i) for i in json.loads(d["sample_ids"])]
            d["image_sha256"] = [str(h) for h in json.loads(d["image_sha256"])]
            out.append(d)
        return out

    def clear_pending_erasure(self, conn: Connection, pending_id: int) -> None:
        conn.execute(delete(t.pending_erasures).where(t.pending_erasures.c.id == pending_id))

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

    # ---- counts and meta ----------------------------------------------------------------------------
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

    def get_meta(self, conn: Connection, key: str) -> str | None:
        row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == key)).first()
        return None if row is None else str(row[0])

    def set_meta(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(select(t.meta.c.key).where(t.meta.c.key == key)).first():
            conn.execute(update(t.meta).where(t.meta.c.key == key).values(value=value))
        else:
            conn.execute(insert(t.meta).values(key=key, value=value))
