"""Ids are never reused, and erasures that a crash interrupted are finished.

SQLite gives a new row the highest rowid + 1, so erasing the newest subject handed its id (and its
consent's, samples', images' ids) to the next person, and audit entries that name ids pointed at the
wrong person. An ``AUTOINCREMENT`` table never gives an id out twice, but SQLite can only make one by
rebuilding the table. Every table whose ids the log, a receipt or a file name refers to is rebuilt here
with its rows, and its id counter starts above every id that already appears anywhere (the table, the
audit log's details, the review queue, batch progress), so ids handed out before this revision are not
handed out again either. PostgreSQL sequences never go back: only the new table is made there.

``pending_erasures``: an erasure's store transaction records the files and index entries still to go;
the record is removed once they are gone (see store/schema.py).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
NEW = "_new_"  # the rebuilt tables' names until the old ones are gone
# Children first: a table is dropped only after every table that refers to it.
DROP_ORDER = (
    "review_decisions",
    "review_candidates",
    "sample_crops",
    "samples",
    "images",
    "subjects",
    "consents",
    "collections",
    "optouts",
    "api_keys",
    "batch_rows",
)
INDEXES = (
    ("ix_subjects_collection_name", "subjects", ["collection_id", "name"]),
    ("ix_samples_subject", "samples", ["subject_id"]),
    ("ix_samples_collection", "samples", ["collection_id"]),
    ("ix_sample_crops_collection", "sample_crops", ["collection_id"]),
    ("ix_review_candidates_case", "review_candidates", ["case_id"]),
)


def _rebuilt_tables(md: sa.MetaData) -> list[sa.Table]:
    """The tables as revision 0003 left them, named ``_new_<name>``, with AUTOINCREMENT where they have
    their own id, and foreign keys to each other's new names (renamed together at the end)."""

    def fk(target: str) -> sa.ForeignKey:
        return sa.ForeignKey(f"{NEW}{target}")

    ai = {"sqlite_autoincrement": True}
    col = sa.Column
    return [
        sa.Table(
            f"{NEW}collections",
            md,
            col("id", sa.Integer, primary_key=True),
            col("name", sa.String(200), nullable=False, unique=True),
            col("model_id", sa.String(100), nullable=False),
            col("dim", sa.Integer, nullable=False),
            col("created_at", TZ, nullable=False),
            col("purpose", sa.Text, nullable=True),
            col("legal_basis", sa.Text, nullable=True),
            col("retention_days", sa.Integer, nullable=False),
            col("keep_crops", sa.Boolean, nullable=False, server_default=sa.false()),
            **ai,
        ),
        sa.Table(
            f"{NEW}consents",
            md,
            col("id", sa.Integer, primary_key=True),
            col("purpose", sa.Text, nullable=False),
            col("granted_by", sa.String(200), nullable=False),
            col("granted_at", TZ, nullable=False),
            col("expires_at", TZ, nullable=True),
            col("withdrawn_at", TZ, nullable=True),
            col("evidence_kind", sa.String(10), nullable=False),
            col("evidence_name", sa.String(500), nullable=True),
            col("evidence_sha256", sa.String(64), nullable=False),
            col("scope", sa.Text, nullable=True),
            **ai,
        ),
        sa.Table(
            f"{NEW}subjects",
            md,
            col("id", sa.Integer, primary_key=True),
            col("collection_id", sa.Integer, fk("collections.id"), nullable=False),
            col("name", sa.String(300), nullable=False),
            col("external_id", sa.String(200), nullable=True),
            col("consent_id", sa.Integer, fk("consents.id"), nullable=False),
            col("created_at", TZ, nullable=False),
            col("last_interaction_at", TZ, nullable=True),
            sa.UniqueConstraint("collection_id", "external_id", name="uq_subject_external_id"),
            **ai,
        ),
        sa.Table(
            f"{NEW}images",
            md,
            col("id", sa.Integer, primary_key=True),
            col("collection_id", sa.Integer, fk("collections.id"), nullable=False),
            col("sha256", sa.String(64), nullable=False),
            col("source", sa.Text, nullable=False),
            col("width", sa.Integer, nullable=False),
            col("height", sa.Integer, nullable=False),
            col("created_at", TZ, nullable=False),
            sa.UniqueConstraint("collection_id", "sha256", name="uq_image_sha"),
            **ai,
        ),
        sa.Table(
            f"{NEW}samples",
            md,
            col("id", sa.Integer, primary_key=True),
            col("collection_id", sa.Integer, fk("collections.id"), nullable=False),
            col("subject_id", sa.Integer, fk("subjects.id"), nullable=False),
            col("image_id", sa.Integer, fk("images.id"), nullable=False),
            col("model_id", sa.String(100), nullable=False),
            col("box_x1", sa.Float, nullable=False),
            col("box_y1", sa.Float, nullable=False),
            col("box_x2", sa.Float, nullable=False),
            col("box_y2", sa.Float, nullable=False),
            col("quality", sa.Text, nullable=False),
            col("vector", sa.LargeBinary, nullable=False),
            col("key_version", sa.Integer, nullable=False),
            col("created_at", TZ, nullable=False),
            **ai,
        ),
        sa.Table(  # keyed by its sample: no id of its own, rebuilt only to follow the new ``samples``
            f"{NEW}sample_crops",
            md,
            col("sample_id", sa.Integer, fk("samples.id"), primary_key=True),
            col("collection_id", sa.Integer, fk("collections.id"), nullable=False),
            col("media_type", sa.String(40), nullable=False),
            col("width", sa.Integer, nullable=False),
            col("height", sa.Integer, nullable=False),
            col("box_x1", sa.Float, nullable=False),
            col("box_y1", sa.Float, nullable=False),
            col("box_x2", sa.Float, nullable=False),
            col("box_y2", sa.Float, nullable=False),
            col("image", sa.LargeBinary, nullable=False),
            col("key_version", sa.Integer, nullable=False),
            col("created_at", TZ, nullable=False),
        ),
        sa.Table(
            f"{NEW}api_keys",
            md,
            col("id", sa.Integer, primary_key=True),
            col("name", sa.String(200), nullable=False),
            col("role", sa.String(20), nullable=False),
            col("prefix", sa.String(16), nullable=False, unique=True),
            col("key_sha256", sa.String(64), nullable=False, unique=True),
            col("created_at", TZ, nullable=False),
            col("revoked_at", TZ, nullable=True),
            col("last_used_at", TZ, nullable=True),
            **ai,
        ),
        sa.Table(
            f"{NEW}optouts",
            md,
            col("id", sa.Integer, primary_key=True),
            col("model_id", sa.String(100), nullable=False),
            col("dim", sa.Integer, nullable=False),
            col("scope", sa.String(200), nullable=False),
            col("vector", sa.LargeBinary, nullable=False),
            col("key_version", sa.Integer, nullable=False),
            col("created_at", TZ, nullable=False),
            **ai,
        ),
        sa.Table(
            f"{NEW}review_candidates",
            md,
            col("id", sa.Integer, primary_key=True),
            col("case_id", sa.String(200), nullable=False),
            col("search_seq", sa.Integer, nullable=False),
            col("collection", sa.String(200), nullable=False),
            col("subject_id", sa.Integer, nullable=False),
            col("subject_name", sa.String(300), nullable=False),
            col("similarity", sa.Float, nullable=False),
            col("created_at", TZ, nullable=False),
            **ai,
        ),
        sa.Table(
            f"{NEW}review_decisions",
            md,
            col("id", sa.Integer, primary_key=True),
            col("candidate_id", sa.Integer, fk("review_candidates.id"), nullable=False),
            col("reviewer", sa.String(200), nullable=False),
            col("decision", sa.String(10), nullable=False),
            col("note", sa.Text, nullable=True),
            col("at", TZ, nullable=False),
            sa.UniqueConstraint("candidate_id", "reviewer", name="uq_one_decision_per_reviewer"),
            **ai,
        ),
        sa.Table(
            f"{NEW}batch_rows",
            md,
            col("id", sa.Integer, primary_key=True),
            col("manifest_sha256", sa.String(64), nullable=False),
            col("row_number", sa.Integer, nullable=False),
            col("status", sa.String(20), nullable=False),
            col("reason", sa.String(50), nullable=True),
            col("message", sa.Text, nullable=True),
            col("collection", sa.String(200), nullable=True),
            col("subject_id", sa.Integer, nullable=True),
            col("image", sa.Text, nullable=True),
            col("image_sha256", sa.String(64), nullable=True),
            col("sample_id", sa.Integer, nullable=True),
            col("at", TZ, nullable=False),
            sa.UniqueConstraint("manifest_sha256", "row_number", name="uq_batch_row"),
            **ai,
        ),
    ]


def _ints(value: Any, key: str) -> Iterable[int]:
    """Every id in a details value: an id, a list of ids, or (``candidates``) [subject id, similarity]
    pairs, possibly one list of them per face."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, list):
        if (
            key == "candidates"
            and len(value) == 2
            and isinstance(value[0], int)
            and not isinstance(value[1], list)
        ):
            yield from _ints(value[0], "")
            return
        for item in value:
            yield from _ints(item, key)


# Which table's ids each audit detail names (audit_events.py).
DETAIL_IDS = {
    "subject_id": "subjects",
    "subject_ids": "subjects",
    "subjects_erased": "subjects",
    "candidates": "subjects",
    "consent_id": "consents",
    "sample_id": "samples",
    "samples_added": "samples",
    "optout_ids": "optouts",
    "candidate_id": "review_candidates",
}


def _highest_ids_ever(conn: sa.Connection) -> dict[str, int]:
    """The highest id of each table that appears anywhere: its own rows, other tables' references, and
    the audit log's details (ids of rows that were deleted since)."""
    high: dict[str, int] = {}

    def see(table: str, value: Any, key: str = "") -> None:
        for i in _ints(value, key):
            high[table] = max(high.get(table, 0), i)

    for table in DROP_ORDER:
        if table != "sample_crops":
            see(table, conn.exec_driver_sql(f"SELECT MAX(id) FROM {table}").scalar())
    for table, column in (
        ("subjects", "SELECT MAX(subject_id) FROM review_candidates"),
        ("subjects", "SELECT MAX(subject_id) FROM batch_rows"),
        ("samples", "SELECT MAX(sample_id) FROM batch_rows"),
    ):
        see(table, conn.exec_driver_sql(column).scalar())
    # A dropped audit table (tampering; `audit verify` names it) leaves only the tables to go by.
    logged = sa.inspect(conn).has_table("audit_log")
    for (details,) in conn.exec_driver_sql("SELECT details FROM audit_log") if logged else ():
        try:
            parsed = json.loads(details)
        except (TypeError, ValueError):
            continue  # a damaged entry: `audit verify` reports it; it cannot name an id here
        if isinstance(parsed, dict):
            for key, table in DETAIL_IDS.items():
                see(table, parsed.get(key), key)
    # Rows made together: every image row was made with a sample, every subject with its consent, so ids
    # up to their partners' may have been handed out and deleted without a trace.
    for table, partner in (("images", "samples"), ("consents", "subjects")):
        see(table, high.get(partner))
    return high


def _rebuild_sqlite(conn: sa.Connection) -> None:
    high = _highest_ids_ever(conn)
    md = sa.MetaData()
    new_tables = _rebuilt_tables(md)
    md.create_all(conn)
    for new in new_tables:
        cols = ", ".join(f'"{c.name}"' for c in new.columns)
        old = new.name[len(NEW) :]
        conn.exec_driver_sql(f'INSERT INTO "{new.name}" ({cols}) SELECT {cols} FROM "{old}"')
    for old in DROP_ORDER:  # children first, so no row ever refers to a table being dropped
        conn.exec_driver_sql(f'DROP TABLE "{old}"')
    for new in new_tables:  # SQLite rewrites the other new tables' foreign keys to the final names
        conn.exec_driver_sql(f'ALTER TABLE "{new.name}" RENAME TO "{new.name[len(NEW) :]}"')
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    for table, highest in high.items():
        # The counter AUTOINCREMENT continues from; inserting the old rows set it to their highest id.
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite(conn)
    op.create_table(
        "pending_erasures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("subject_id", sa.Integer, nullable=False),
        sa.Column("sample_ids", sa.Text, nullable=False),
        sa.Column("image_sha256", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    # AUTOINCREMENT tables are read and written by revision 0003's code as before: they stay.
    op.drop_table("pending_erasures")
