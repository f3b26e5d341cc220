"""A collection may find faces with another detector than its model pack's own (``collection create
--detector``): the boxes come from that detector, the landmarks and the chip from the pack, so vectors
stay comparable. NULL keeps the pack's own detector, as every collection had before.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("detector", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("detector")
