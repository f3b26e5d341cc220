"""Progress of ``facevault enroll-batch`` (resumable batch ingest).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_rows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(50), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("collection", sa.String(200), nullable=True),
        sa.Column("subject_id", sa.Integer, nullable=True),
        sa.Column("image", sa.Text, nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("sample_id", sa.Integer, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("manifest_sha256", "row_number", name="uq_batch_row"),
    )


def downgrade() -> None:
    op.drop_table("batch_rows")
