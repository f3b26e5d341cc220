"""Plain result records returned by the service; ``to_dict`` gives the stable JSON of docs/CLI.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
