"""When an opt-out's erasures were all done. The opt-out template is stored first, in its own
transaction, so that the face is blocked from then on; the erasures follow, and ``finished_at`` is set
with the audit entry. NULL marks an opt-out that a crash interrupted: the next open of the vault finishes
its erasures. Opt-outs recorded before this revision are taken as finished (they were stored after
their erasures).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("optouts", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE optouts SET finished_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("optouts") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("finished_at")
