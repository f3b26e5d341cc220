"""Photo libraries: photos referenced by path (or kept as copies), every face in them with its protected
template, the people they are grouped into (named only with a consent record) and the manual decisions
that survive re-clustering.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

AI = {"sqlite_autoincrement": True}
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "libraries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("keep_crops", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("keep_copies", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("next_person", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        **AI,
    )
    op.create_table(
        "library_photos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("library_id", sa.Integer, sa.ForeignKey("libraries.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stored", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("taken_at", TS, nullable=True),
        sa.Column("orientation", sa.Integer, nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("error", sa.String(50), nullable=True),
        sa.Column("faces", sa.Integer, nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.UniqueConstraint("library_id", "sha256", name="uq_library_photo_sha"),
        **AI,
    )
    op.create_index("ix_library_photos_source", "library_photos", ["library_id", "source"])
    op.create_table(
        "library_people",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("library_id", sa.Integer, sa.ForeignKey("libraries.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("name", sa.String(300), nullable=True),
        sa.Column("consent_id", sa.Integer, sa.ForeignKey("consents.id"), nullable=True),
        sa.Column("subject_id", sa.Integer, nullable=True),
        sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("feature_face_id", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_interaction_at", TS, nullable=True),
        sa.UniqueConstraint("library_id", "number", name="uq_library_person_number"),
        **AI,
    )
    op.create_table(
        "library_faces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("library_id", sa.Integer, sa.ForeignKey("libraries.id"), nullable=False),
        sa.Column("photo_id", sa.Integer, sa.ForeignKey("library_photos.id"), nullable=False),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("library_people.id"), nullable=True),
        sa.Column("box_x1", sa.Float, nullable=False),
        sa.Column("box_y1", sa.Float, nullable=False),
        sa.Column("box_x2", sa.Float, nullable=False),
        sa.Column("box_y2", sa.Float, nullable=False),
        sa.Column("landmarks", sa.Text, nullable=False),
        sa.Column("quality", sa.Text, nullable=False),
        sa.Column("det_score", sa.Float, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        **AI,
    )
    op.create_index("ix_library_faces_library", "library_faces", ["library_id"])
    op.create_index("ix_library_faces_person", "library_faces", ["person_id"])
    op.create_index("ix_library_faces_photo", "library_faces", ["photo_id"])
    op.create_table(
        "library_crops",
        sa.Column("face_id", sa.Integer, sa.ForeignKey("library_faces.id"), primary_key=True),
        sa.Column("library_id", sa.Integer, sa.ForeignKey("libraries.id"), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_library_crops_library", "library_crops", ["library_id"])
    op.create_table(
        "library_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("library_id", sa.Integer, sa.ForeignKey("libraries.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("face_id", sa.Integer, nullable=True),
        sa.Column("person_id", sa.Integer, nullable=True),
        sa.Column("other_person_id", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", TS, nullable=False),
        **AI,
    )
    op.create_index("ix_library_decisions_library", "library_decisions", ["library_id"])


def downgrade() -> None:
    op.drop_index("ix_library_decisions_library", "library_decisions")
    op.drop_table("library_decisions")
    op.drop_index("ix_library_crops_library", "library_crops")
    op.drop_table("library_crops")
    for ix in ("ix_library_faces_photo", "ix_library_faces_person", "ix_library_faces_library"):
        op.drop_index(ix, "library_faces")
    op.drop_table("library_faces")
    op.drop_table("library_people")
    op.drop_index("ix_library_photos_source", "library_photos")
    op.drop_table("library_photos")
    op.drop_table("libraries")
