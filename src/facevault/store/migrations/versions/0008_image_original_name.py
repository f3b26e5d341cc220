"""The name a photo enrolled over HTTP had on the uploader's computer (sanitised, never a server path),
so outcomes and sample lists can name the user's own file instead of the kept copy's path or hash. It is
personal data like the photo: it lives on the image row and goes with it on erasure. NULL for photos
enrolled from a path (their source is the path) and for every image enrolled before.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("original_name", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("original_name")
