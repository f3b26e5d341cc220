"""Tables of the source of truth. The vector index is derived from ``samples`` and can be rebuilt.

Every change to these tables is an Alembic migration in ``store/migrations/versions`` (docs/SCALE.md);
``tests/test_store_backends.py`` checks that the migrations produce exactly this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from ..config import DEFAULT_RETENTION_DAYS

SCHEMA_VERSION = 9  # the Alembic revision count; alembic_version holds the revision id

# Ids the audit log, receipts or files (photos/c<id>, collection-<id>.faiss) refer to are never given out
# twice: SQLite reuses the highest deleted rowid unless a table is AUTOINCREMENT (revision 0004);
# PostgreSQL sequences never go back. The audit log numbers its own entries (audit/).
NEVER_REUSED = {"sqlite_autoincrement": True}

metadata = MetaData()

meta = Table(
    "vault_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("model_id", String(100), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Records of processing (GDPR Art. 30) and the written retention policy (BIPA 15(a)).
    Column("purpose", Text, nullable=True),
    Column("legal_basis", Text, nullable=True),
    Column("retention_days", Integer, nullable=False, default=DEFAULT_RETENTION_DAYS),
    # Keep an encrypted face crop per sample so the collection can move to another model pack
    # (``sample_crops``). Off unless asked for: privacy by default (docs/PRIVACY.md).
    Column("keep_crops", Boolean, nullable=False, default=False, server_default=false()),
    # The detector that finds faces for this collection when it is not the pack's own (revision 0006);
    # NULL: the pack's own. Only boxes come from it: landmarks and chips stay the pack's.
    Column("detector", String(100), nullable=True),
    **NEVER_REUSED,
)

consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("purpose", Text, nullable=False),
    Column("granted_by", String(200), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("evidence_kind", String(10), nullable=False),  # "file" | "text"
    Column("evidence_name", String(500), nullable=True),
    Column("evidence_sha256", String(64), nullable=False),
    Column("scope", Text, nullable=True),  # the collection(s) this consent covers
    **NEVER_REUSED,
)

subjects = Table(
    "subjects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("name", String(300), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("consent_id", Integer, ForeignKey("consents.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Enrollment or consent renewal; retention counts from here.
    Column("last_interaction_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("collection_id", "external_id", name="uq_subject_external_id"),
    **NEVER_REUSED,
)
Index("ix_subjects_collection_name", subjects.c.collection_id, subjects.c.name)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The uploaded file's (sanitised) name for photos enrolled over HTTP (revision 0008); NULL otherwise.
    # Personal data like the photo: erased with the row.
    Column("original_name", String(200), nullable=True),
    UniqueConstraint("collection_id", "sha256", name="uq_image_sha"),
    **NEVER_REUSED,
)

samples = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("subject_id", Integer, ForeignKey("subjects.id"), nullable=False),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("model_id", String(100), nullable=False),
    Column("box_x1", Float, nullable=False),
    Column("box_y1", Float, nullable=False),
    Column("box_x2", Float, nullable=False),
    Column("box_y2", Float, nullable=False),
    Column("quality", Text, nullable=False),  # JSON
    # The template, protected: AES-256-GCM over the secretly rotated float32 vector (protection.py).
    Column("vector", LargeBinary, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)
Index("ix_samples_subject", samples.c.subject_id)
Index("ix_samples_collection", samples.c.collection_id)

# One loose face crop per sample, kept only where the collection's ``keep_crops`` is on: the source for
# re-embedding with another model pack (``facevault collection migrate``). ``image`` is AES-256-GCM
# ciphertext of the encoded crop under the template key ``key_version``, bound to collection and sample
# (crops.py); the box is the detected face in crop pixels. Deleted with its sample, always.
sample_crops = Table(
    "sample_crops",
    metadata,
    Column("sample_id", Integer, ForeignKey("samples.id"), primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("media_type", String(40), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("box_x1", Float, nullable=False),
    Column("box_y1", Float, nullable=False),
    Column("box_x2", Float, nullable=False),
    Column("box_y2", Float, nullable=False),
    Column("image", LargeBinary, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_sample_crops_collection", sample_crops.c.collection_id)

# Append-only, hash-chained record of every search and every change (the audit issue extends it).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(50), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("case_id", String(200), nullable=True),
    Column("collection", String(200), nullable=True),
    Column("probe_sha256", String(64), nullable=True),
    Column("details", Text, nullable=False),  # JSON, never biometric data
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# API keys for the REST API: only a SHA-256 of the secret is stored; ``prefix`` identifies a key in
# listings and logs without revealing it.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

# Protected templates of people who opted out by selfie: later enrollments that match are refused.
optouts = Table(
    "optouts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", String(100), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("scope", String(200), nullable=False),  # a collection name, or "*" for every collection
    Column("vector", LargeBinary, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Set when every erasure of the opt-out is done (revision 0009); NULL: a crash interrupted them, and
    # the next open finishes them (the template itself blocks the face from the moment it is stored).
    Column("finished_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

# Human review (EU AI Act Art. 14): search candidates of a case, and reviewers' decisions on them.
review_candidates = Table(
    "review_candidates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(200), nullable=False),
    Column("search_seq", Integer, nullable=False),
    Column("collection", String(200), nullable=False),
    Column("subject_id", Integer, nullable=False),
    Column("subject_name", String(300), nullable=False),
    Column("similarity", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)
Index("ix_review_candidates_case", review_candidates.c.case_id)

review_decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("candidate_id", Integer, ForeignKey("review_candidates.id"), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("decision", String(10), nullable=False),  # confirm | reject
    Column("note", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("candidate_id", "reviewer", name="uq_one_decision_per_reviewer"),
    **NEVER_REUSED,
)

# Progress of `facevault enroll-batch`: one row per manifest row that reached an outcome, committed in the
# same transaction as the sample it produced, so a killed run resumes without losing or repeating work.
batch_rows = Table(
    "batch_rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("manifest_sha256", String(64), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # enrolled | rejected | error
    Column("reason", String(50), nullable=True),
    Column("message", Text, nullable=True),
    Column("collection", String(200), nullable=True),
    Column("subject_id", Integer, nullable=True),
    Column("image", Text, nullable=True),
    Column("image_sha256", String(64), nullable=True),
    Column("sample_id", Integer, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("manifest_sha256", "row_number", name="uq_batch_row"),
    **NEVER_REUSED,
)

# Erasures whose store transaction committed but whose files (kept photo copies) and index entries may
# not be gone yet: written in the erasure's own transaction, deleted once everything is gone, finished
# at the next open (``service.erasure.finish_pending_erasures``) or by ``doctor --repair`` after a crash.
# Holds ids and image hashes only (as the erasure receipt does), never biometric data. No foreign key:
# a pending erasure outlives its collection if that is deleted meanwhile.
pending_erasures = Table(
    "pending_erasures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", Integer, nullable=False),
    Column("subject_id", Integer, nullable=False),
    Column("sample_ids", Text, nullable=False),  # JSON list
    Column("image_sha256", Text, nullable=False),  # JSON list: the kept photo copies to delete
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

# API keys that speak another server's protocol (``facevault keys create --compat compreface``): each is
# bound to one collection (by id: ids are never reused, so a binding never moves to a later collection of
# the same name), one service type, the roles it may act in on that surface and a fixed purpose (and
# case) that every search and verification made with it is audited under (revision 0005). A compat key
# is refused by facevault's own API: its powers are only what the binding says.
compat_keys = Table(
    "compat_keys",
    metadata,
    Column("api_key_id", Integer, ForeignKey("api_keys.id"), primary_key=True),
    Column("protocol", String(20), nullable=False),  # "compreface"
    Column("service", String(20), nullable=False),  # recognition | detection | verification
    Column("collection_id", Integer, nullable=True),  # no foreign key: a deleted collection is refused
    Column("roles", String(100), nullable=False),  # comma-separated, from config.ROLES
    Column("purpose", Text, nullable=False),
    Column("case_id", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# ---- photo libraries (revision 0007) ---------------------------------------------------------------------
# A library is a set of photos with a declared owner, purpose, legal basis and retention period, pinned to
# one model pack. Every face of every photo is kept (protected template, like samples'), grouped into
# people; a person has no name until it is linked to a consent record (``consent_id``).
libraries = Table(
    "libraries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("owner", String(200), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("retention_days", Integer, nullable=False, default=DEFAULT_RETENTION_DAYS),
    Column("model_id", String(100), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("keep_crops", Boolean, nullable=False, default=False, server_default=false()),
    Column("keep_copies", Boolean, nullable=False, default=False, server_default=false()),
    Column("next_person", Integer, nullable=False, default=1),  # the N of the next "person #N"
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

# One row per distinct photo (by SHA-256) of a library. ``status``: ``pending`` while its faces are being
# found, ``done`` once they are committed (in the same transaction), ``error`` with the error's code when
# it could not be read; a re-run of ``library add`` skips ``done`` and ``error`` rows with the same hash.
library_photos = Table(
    "library_photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("library_id", Integer, ForeignKey("libraries.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source", Text, nullable=False),  # the path it was added from
    Column("stored", Boolean, nullable=False, default=False, server_default=false()),  # a copy is kept
    Column("size_bytes", Integer, nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("taken_at", DateTime(timezone=True), nullable=True),  # EXIF DateTimeOriginal
    Column("orientation", Integer, nullable=True),  # EXIF orientation (1-8), applied before detection
    Column("status", String(10), nullable=False),  # pending | done | error
    Column("error", String(50), nullable=True),
    Column("faces", Integer, nullable=False, default=0),
    Column("added_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("library_id", "sha256", name="uq_library_photo_sha"),
    **NEVER_REUSED,
)
Index("ix_library_photos_source", library_photos.c.library_id, library_photos.c.source)

library_people = Table(
    "library_people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("library_id", Integer, ForeignKey("libraries.id"), nullable=False),
    Column("number", Integer, nullable=False),  # "person #N", unique within the library
    Column("name", String(300), nullable=True),  # only with a consent record
    Column("consent_id", Integer, ForeignKey("consents.id"), nullable=True),
    Column("subject_id", Integer, nullable=True),  # an enrolled subject this person is (no FK: erasable)
    Column("hidden", Boolean, nullable=False, default=False, server_default=false()),
    Column("feature_face_id", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_interaction_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("library_id", "number", name="uq_library_person_number"),
    **NEVER_REUSED,
)

# Every face found: box, the detector's 5 landmarks, quality, detector score and the protected template
# (AES-256-GCM over the rotated vector, bound to library and model). ``pinned``: a person chose by hand
# (move, split, merge); re-clustering never moves a pinned face.
library_faces = Table(
    "library_faces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("library_id", Integer, ForeignKey("libraries.id"), nullable=False),
    Column("photo_id", Integer, ForeignKey("library_photos.id"), nullable=False),
    Column("person_id", Integer, ForeignKey("library_people.id"), nullable=True),
    Column("box_x1", Float, nullable=False),
    Column("box_y1", Float, nullable=False),
    Column("box_x2", Float, nullable=False),
    Column("box_y2", Float, nullable=False),
    Column("landmarks", Text, nullable=False),  # JSON [[x, y] x 5]: eyes, nose, mouth corners
    Column("quality", Text, nullable=False),  # JSON
    Column("det_score", Float, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("pinned", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)
Index("ix_library_faces_library", library_faces.c.library_id)
Index("ix_library_faces_person", library_faces.c.person_id)
Index("ix_library_faces_photo", library_faces.c.photo_id)

# The encrypted thumbnail crop of a face, only in libraries with ``keep_crops``; deleted with its face.
library_crops = Table(
    "library_crops",
    metadata,
    Column("face_id", Integer, ForeignKey("library_faces.id"), primary_key=True),
    Column("library_id", Integer, ForeignKey("libraries.id"), nullable=False),
    Column("media_type", String(40), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("image", LargeBinary, nullable=False),
    Column("key_version", Integer, nullable=False),
)
Index("ix_library_crops_library", library_crops.c.library_id)

# Manual decisions, kept across re-clustering: ``not_person`` (this face is not this person: never put
# back), and a log of merge/split/move/remove/hide for the record. Pinned faces carry the positive ones.
library_decisions = Table(
    "library_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("library_id", Integer, ForeignKey("libraries.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # merge | split | move | remove | not_person | hide
    Column("face_id", Integer, nullable=True),
    Column("person_id", Integer, nullable=True),
    Column("other_person_id", Integer, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)
Index("ix_library_decisions_library", library_decisions.c.library_id)
