"""Encrypted face crops per sample, kept where a collection opts in (``keep_crops``), so a collection can
be re-embedded with another model pack (``facevault collection migrate``).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing collections keep no crops: privacy by default.
    op.add_column(
        "collections",
        sa.Column("keep_crops", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "sample_crops",
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id"), primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("box_x1", sa.Float, nullable=False),
        sa.Column("box_y1", sa.Float, nullable=False),
        sa.Column("box_x2", sa.Float, nullable=False),
        sa.Column("box_y2", sa.Float, nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sample_crops_collection", "sample_crops", ["collection_id"])


def downgrade() -> None:
    op.drop_index("ix_sample_crops_collection", table_name="sample_crops")
    op.drop_table("sample_crops")
    with op.batch_alter_table("collections") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("keep_crops")
