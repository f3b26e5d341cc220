"""Plain result records returned by the service; ``to_dict`` gives the stable JSON of docs/CLI.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

DUPLICATE_IMAGE_MESSAGE = "this exact image is already enrolled in the collection"


@dataclass
class EnrollOutcome:
    image: str
    status: str  # "enrolled" | "rejected"
    reason: str | None = None  # named rejection reason
    message: str | None = None
    sample_id: int | None = None
    box: list[float] | None = None
    quality: dict[str, float] | None = None
    image_sha256: str | None = None
    # The uploaded file's name (photos enrolled over HTTP; None for paths): what the user calls it.
    original_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "enrolled"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MatchedSample:
    sample_id: int
    similarity: float
    image: str
    image_sha256: str
    box: list[float]


@dataclass
class Candidate:
    subject_id: int
    name: str
    external_id: str | None
    similarity: float
    estimated_fmr: float
    samples: list[MatchedSample] = field(default_factory=list)


@dataclass
class FaceResult:
    face_index: int
    box: list[float]
    quality: dict[str, float]
    searched: bool
    skipped_reason: str | None
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class SearchResult:
    collection: str
    model_id: str
    probe_sha256: str
    threshold: float
    threshold_fmr: float
    top_k: int
    purpose: str
    case_id: str | None
    audit_seq: int
    faces: list[FaceResult]

    @property
    def matched(self) -> bool:
        return any(f.candidates for f in self.faces)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matched"] = self.matched
        return d


@dataclass
class VerifyResult:
    model_id: str
    similarity: float
    threshold: float
    threshold_fmr: float
    estimated_fmr: float
    same_person: bool
    face_a: dict[str, Any]
    face_b: dict[str, Any]
    audit_seq: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    ok: bool
    collections: list[dict[str, Any]]
    audit: dict[str, Any]
    repaired: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Record(dict):  # type: ignore[type-arg]
    """Base of typed use-case results: a dataclass whose ``to_dict()`` is the documented JSON. It is also
    that dict (filled when the record is made), so callers written against the earlier dict results keep
    working: ``r["key"]``, ``dict(r)``, ``r == {...}``, ``json.dumps(r)``. Records are not changed after
    they are returned."""

    def __post_init__(self) -> None:
        dict.update(self, self.to_dict())

    def __str__(self) -> str:  # printed as the dict it replaced (CLI text output)
        return dict.__repr__(self)

    # Fields left out of the dict when they are None (optional parts, e.g. counts only in listings).
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: _plain(value)
            for f in fields(self)  # type: ignore[arg-type]
            if (value := getattr(self, f.name)) is not None or f.name not in self.OMIT_NONE
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Record) or hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Principal:
    """Who is calling over HTTP: one API key."""

    key_id: int
    name: str
    role: str
    prefix: str

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "prefix": self.prefix, "actor": self.actor}


# ---- typed results of the use cases (each reads like the dict it replaced; to_dict() is its JSON) ----
@dataclass(eq=False)
class ErasureReceipt(Record):
    """What an erasure removed: counts and hashes, never biometric data (also in the audit entry)."""

    collection: str
    name: str
    audit_seq: int
    photos_removed: int
    subject_id: int
    reason: str
    samples_erased: int
    crops_erased: int
    images_erased: int
    image_sha256: list[str]
    consent_id: int | None
    consent_evidence_sha256: str | None


@dataclass(eq=False)
class SubjectDeleted(ErasureReceipt):
    samples_removed: int = 0


@dataclass(eq=False)
class RetentionChanged(Record):
    collection: str
    retention_days: int


@dataclass(eq=False)
class DetectorChanged(Record):
    collection: str
    detector: str  # the detector that now finds the collection's faces


@dataclass(eq=False)
class KeepCropsChanged(Record):
    collection: str
    keep_crops: bool
    crops_deleted: int


@dataclass(eq=False)
class RetentionDue(Record):
    collection: str
    subject_id: int
    reason: str  # consent_withdrawn | consent_expired | retention_period_over


@dataclass(eq=False)
class SweepReport(Record):
    swept_at: str
    erased: list[ErasureReceipt]


@dataclass(eq=False)
class OptoutReport(Record):
    scope: str
    optout_ids: list[int]
    erased: list[ErasureReceipt]
    audit_seq: int


@dataclass(eq=False)
class ReviewCandidate(Record):
    candidate_id: int
    search_seq: int
    collection: str
    subject_id: int
    name: str
    similarity: float
    confirmed_by: list[str]
    rejected_by: list[str]
    state: str  # pending | confirmed | rejected


@dataclass(eq=False)
class ReviewStatus(Record):
    case_id: str
    candidates: list[ReviewCandidate]
    confirmations_needed: int


@dataclass(eq=False)
class KeyRotation(Record):
    from_version: int
    to_version: int
    samples: int
    crops: int
    optouts: int
    library_faces: int = 0
    library_crops: int = 0


@dataclass(eq=False)
class MigrationReport(Record):
    collection: str
    from_model: str
    to_model: str
    dim: int
    samples: int
    located_by_fallback: int
    indexed: int
    optout_models: list[str]
    audit_seq: int


@dataclass(eq=False)
class IndexRebuilt(Record):
    collection: str
    indexed: int


@dataclass(eq=False)
class CollectionInfo(Record):
    """A collection: pinned model, purpose, legal basis, retention, crops; with its counts when listed."""

    id: int
    name: str
    model_id: str
    dim: int
    created_at: Any  # datetime (UTC)
    purpose: str | None
    legal_basis: str | None
    retention_days: int
    keep_crops: bool
    detector: str | None = None  # None: the model pack's own detector
    subjects: int | None = None  # counts: only in listings
    samples: int | None = None

    OMIT_NONE = frozenset({"subjects", "samples"})

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CollectionInfo:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(eq=False)
class ConsentInfo(Record):
    id: int
    purpose: str
    granted_by: str
    granted_at: str | None
    expires_at: str | None
    withdrawn_at: str | None
    evidence_kind: str
    evidence_name: str | None
    evidence_sha256: str


@dataclass(eq=False)
class SampleInfo(Record):
    """One enrolled sample as listed with its subject (never its template)."""

    sample_id: int
    model_id: str
    image: str
    image_sha256: str
    box: list[float]
    quality: Any
    created_at: str | None
    # The uploaded file's name for a photo enrolled over HTTP (None: enrolled from a path, or unknown).
    original_name: str | None = None


@dataclass(eq=False)
class SubjectInfo(Record):
    """A subject with the consent record that allows it to exist (and its samples when shown)."""

    id: int
    collection: str
    name: str
    external_id: str | None
    created_at: str | None
    consent: ConsentInfo
    samples: list[SampleInfo] | None = None

    OMIT_NONE = frozenset({"samples"})


@dataclass(eq=False)
class SubjectSummary(Record):
    id: int
    name: str
    external_id: str | None
    samples: int


@dataclass(eq=False)
class SampleRecord(Record):
    """One sample with its subject and source image (``Vault.get_sample``)."""

    sample_id: int
    subject_id: int
    name: str
    external_id: str | None
    image: str
    image_sha256: str
    box: list[float]


@dataclass(eq=False)
class ConsentView(Record):
    """A subject's consent record (``consent show``): who it belongs to, then the record's own fields,
    in one flat dict."""

    subject_id: int
    name: str
    collection: str
    consent: ConsentInfo

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "name": self.name,
            "collection": self.collection,
            **self.consent.to_dict(),
        }


@dataclass(eq=False)
class ApiKeyInfo(Record):
    """An API key as listed: its name, role and prefix, never its secret or hash."""

    name: str
    role: str
    prefix: str
    created_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    active: bool


@dataclass(eq=False)
class CollectionDeletion(Record):
    """What deleting a collection removed (also the details of its audit entry)."""

    crops: int
    samples: int
    images: int
    subjects: int


@dataclass(eq=False)
class AuditEntry(Record):
    """One entry of the hash-chained audit log."""

    seq: int
    at: str
    action: str
    actor: str
    role: str | None
    purpose: str | None
    case_id: str | None
    collection: str | None
    probe_sha256: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEntry:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(eq=False)
class ProcessingRecord(Record):
    """The GDPR Art. 30 record of processing activities of a deployment."""

    controller: str
    categories_of_data: list[str]
    collections: list[dict[str, Any]]
    counts: dict[str, int]
    recipients: dict[str, Any]
    transfers: str
    retention: str
    security_measures: list[str]


@dataclass
class DetectedFaceInfo:
    """One face found by ``detect``: where it is and how good it is, never who it is."""

    face_index: int
    box: list[float]  # x1, y1, x2, y2 in the upright photo's pixels
    landmarks: list[list[float]]  # the detector's own points (5 for the built-in packs)
    left_eye: list[float]  # eye centre with the smaller x in the image
    right_eye: list[float]
    nose: list[float]
    detector_score: float
    quality: dict[str, float]
    enrollable: bool  # the enrollment quality gate would accept this face
    reasons: list[str]  # every named reason the gate would refuse it for (face_too_small, ...)
    searchable: bool  # a search would look this face up (eyes far enough apart)


@dataclass
class DetectResult:
    model_id: str
    detector: str
    probe_sha256: str
    width: int
    height: int
    audit_seq: int
    faces: list[DetectedFaceInfo]
    drawn_jpeg: bytes | None = field(default=None, repr=False)  # the photo with the boxes, when asked

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["drawn_jpeg"]
        d["face_count"] = len(self.faces)
        return d
