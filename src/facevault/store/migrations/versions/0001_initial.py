"""The store as it was before migrations existed (vaults created by ``create_all`` are stamped here).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vault_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("purpose", sa.Text, nullable=True),
        sa.Column("legal_basis", sa.Text, nullable=True),
        sa.Column("retention_days", sa.Integer, nullable=False),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.Column("granted_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("withdrawn_at", TZ, nullable=True),
        sa.Column("evidence_kind", sa.String(10), nullable=False),
        sa.Column("evidence_name", sa.String(500), nullable=True),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=True),
    )
    op.create_table(
        "subjects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("consent_id", sa.Integer, sa.ForeignKey("consents.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_interaction_at", TZ, nullable=True),
        sa.UniqueConstraint("collection_id", "external_id", name="uq_subject_external_id"),
    )
    op.create_index("ix_subjects_collection_name", "subjects", ["collection_id", "name"])
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("collection_id", "sha256", name="uq_image_sha"),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"), nullable=False),
        sa.Column("subject_id", sa.Integer, sa.ForeignKey("subjects.id"), nullable=False),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("box_x1", sa.Float, nullable=False),
        sa.Column("box_y1", sa.Float, nullable=False),
        sa.Column("box_x2", sa.Float, nullable=False),
        sa.Column("box_y2", sa.Float, nullable=False),
        sa.Column("quality", sa.Text, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_samples_subject", "samples", ["subject_id"])
    op.create_index("ix_samples_collection", "samples", ["collection_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=True),
        sa.Column("purpose", sa.Text, nullable=True),
        sa.Column("case_id", sa.String(200), nullable=True),
        sa.Column("collection", sa.String(200), nullable=True),
        sa.Column("probe_sha256", sa.String(64), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("last_used_at", TZ, nullable=True),
    )
    op.create_table(
        "optouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "review_candidates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("search_seq", sa.Integer, nullable=False),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("subject_id", sa.Integer, nullable=False),
        sa.Column("subject_name", sa.String(300), nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_review_candidates_case", "review_candidates", ["case_id"])
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("candidate_id", sa.Integer, sa.ForeignKey("review_candidates.id"), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("at", TZ, nullable=False),
        sa.UniqueConstraint("candidate_id", "reviewer", name="uq_one_decision_per_reviewer"),
    )


def downgrade() -> None:
    for table in (
        "review_decisions",
        "review_candidates",
        "optouts",
        "api_keys",
        "audit_log",
        "samples",
        "images",
        "subjects",
        "consents",
        "collections",
        "vault_meta",
    ):
        op.drop_table(table)
