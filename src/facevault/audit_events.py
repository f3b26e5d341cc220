"""One typed event per audited action, serialised in one place (``AuditEvent.entry``).

Every use case that writes the audit log builds one of these; the service context appends it in the
use case's own transaction. The common fields (purpose, case id, collection, probe hash) are columns of
the log; every other field of an event goes into its ``details`` JSON, under the field's name. An event
never holds an image or a template: only hashes, ids, counts and scores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

COMMON = ("purpose", "case_id", "collection", "probe_sha256")


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    action: ClassVar[str]
    # Fields left out of the details when they are None (so entries keep the shape they always had).
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()
    # The name of a dict field whose items become the details themselves (receipts, counts).
    SPREAD: ClassVar[str | None] = None

    purpose: str | None = None
    case_id: str | None = None
    collection: str | None = None
    probe_sha256: str | None = None

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in COMMON:
                continue
            value = getattr(self, f.name)
            if f.name == self.SPREAD:
                out.update(value or {})
            elif value is not None or f.name not in self.OMIT_NONE:
                out[f.name] = value
        return out

    def entry(self) -> dict[str, Any]:
        """The keyword arguments of ``audit.append`` for this event (less key and actor)."""
        return {
            "purpose": self.purpose,
            "case_id": self.case_id,
            "collection": self.collection,
            "probe_sha256": self.probe_sha256,
            "details": self.details(),
        }


def _event(action: str) -> Any:
    def wrap(cls: type[AuditEvent]) -> type[AuditEvent]:
        cls.action = action
        return dataclass(frozen=True, kw_only=True)(cls)

    return wrap


# ---- collections ----------------------------------------------------------------------------------------
@_event("collection.create")
class CollectionCreated(AuditEvent):
    OMIT_NONE = frozenset({"license_acceptance", "detector"})
    model_id: str
    keep_crops: bool
    detector: str | None = None  # another detector than the pack's own
    license_acceptance: dict[str, Any] | None = None


@_event("collection.delete")
class CollectionDeleted(AuditEvent):
    SPREAD = "counts"
    counts: dict[str, int] = field(default_factory=dict)


@_event("collection.keep_crops")
class KeepCropsSet(AuditEvent):
    keep_crops: bool
    crops_deleted: int


@_event("collection.detector")
class DetectorSet(AuditEvent):
    detector: str | None  # None: the pack's own again


@_event("collection.migrate")
class CollectionMigrated(AuditEvent):
    OMIT_NONE = frozenset({"license_acceptance"})
    from_model: str
    to_model: str
    dim: int
    samples: int
    located_by_fallback: int
    license_acceptance: dict[str, Any] | None = None


@_event("retention.set")
class RetentionSet(AuditEvent):
    retention_days: int


# ---- subjects, consent, enrollment ---------------------------------------------------------------------
@_event("subject.add")
class SubjectAdded(AuditEvent):
    subject_id: int
    consent_id: int


@_event("subject.erase")
class SubjectErased(AuditEvent):
    """The erasure receipt: counts and hashes, never biometric data."""

    SPREAD = "receipt"
    receipt: dict[str, Any] = field(default_factory=dict)


@_event("consent.withdraw")
class ConsentWithdrawn(AuditEvent):
    subject_id: int
    consent_id: int


@_event("enroll")
class Enrolled(AuditEvent):
    subject_id: int
    samples_added: list[int]
    rejected: int


@_event("enroll")
class BatchEnrolled(AuditEvent):
    """One chunk of a batch enrollment, per collection."""

    batch_manifest_sha256: str
    rows: list[int]
    subject_ids: list[int]
    samples_added: list[int]
    rejected: int


# ---- searches -----------------------------------------------------------------------------------------
@_event("search")
class Searched(AuditEvent):
    """A 1:N search: what was returned (subject ids and scores), at which threshold."""

    OMIT_NONE = frozenset({"input", "threshold", "threshold_fmr", "top_k", "faces", "candidates", "error"})
    outcome: str  # ok | no_face | error
    input: str | None = None  # "embedding" for a search with a precomputed vector
    threshold: float | None = None
    threshold_fmr: float | None = None
    top_k: int | None = None
    faces: int | None = None
    candidates: list[Any] | None = None
    error: str | None = None


@_event("verify")
class Verified(AuditEvent):
    OMIT_NONE = frozenset({"other_sha256", "similarity", "threshold", "same_person", "outcome", "error"})
    outcome: str | None = None  # "error" for a refused comparison; absent for a finished one
    error: str | None = None
    other_sha256: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    same_person: bool | None = None


@_event("optout")
class OptedOut(AuditEvent):
    OMIT_NONE = frozenset(
        {
            "scope",
            "optout_ids",
            "subjects_erased",
            "library_people_erased",
            "library_photos_blurred",
            "library_photos_not_owned",
        }
    )
    outcome: str
    scope: str | None = None
    optout_ids: list[int] | None = None
    subjects_erased: list[int] | None = None
    library_people_erased: list[Any] | None = None  # [library name, person number]
    library_photos_blurred: int | None = None  # kept copies in which the erased faces were blurred
    library_photos_not_owned: int | None = None  # photos by server path: faces erased, file not written


# ---- review, retention, keys, records ---------------------------------------------------------------------
@_event("review")
class Reviewed(AuditEvent):
    candidate_id: int
    subject_id: int
    decision: str
    reviewer: str


@_event("retention.sweep")
class RetentionSwept(AuditEvent):
    OMIT_NONE = frozenset({"library_people_erased"})
    erased_subjects: int
    library_people_erased: int | None = None


@_event("keys.rotate")
class KeysRotated(AuditEvent):
    from_version: int
    to_version: int
    samples: int
    crops: int
    optouts: int
    library_faces: int = 0
    library_crops: int = 0


@_event("audit.export")
class AuditExported(AuditEvent):
    entries: int
    format: str
    since: str | None
    until: str | None


@_event("audit.checkpoint")
class AuditCheckpointed(AuditEvent):
    """A signed checkpoint of the log was handed out; the checkpoint names this very entry."""


@_event("chain_break")
class ChainBreak(AuditEvent):
    """Written by the log itself when an append finds the chain's end is not where its heads say: the
    gap stays on the record (verification fails) until an admin acknowledges it."""

    problem: str
    found: dict[str, Any]  # the last entry that was there: {"seq", "hash"}
    db_head: dict[str, Any] | None  # what the head record in the database said, if readable
    external_head: dict[str, Any] | None  # what the head file outside the database said, if readable


@_event("audit.acknowledge")
class ChainBreakAcknowledged(AuditEvent):
    """An admin's acknowledgement of the breaks verification found: their identities (``acknowledged``,
    which later verification compares) and a readable copy (``problems``)."""

    reason: str
    acknowledged: list[str]
    problems: list[dict[str, Any]]


@_event("apikey.create")
class ApiKeyCreated(AuditEvent):
    """Prefix, role and name name a key; never its secret or hash."""

    prefix: str
    role: str
    name: str


@_event("apikey.revoke")
class ApiKeyRevoked(AuditEvent):
    prefix: str
    role: str
    name: str


@_event("login")
class SignedIn(AuditEvent):
    prefix: str
    role: str
    name: str


@_event("sample.view")
class SampleViewed(AuditEvent):
    """A face thumbnail of one enrolled sample was shown (who saw which face is accounted for)."""

    subject_id: int
    sample_id: int


@_event("test.concurrent")
class ConcurrencyProbe(AuditEvent):
    """For tests of the log itself (concurrent writers)."""

    SPREAD = "data"
    data: dict[str, Any] = field(default_factory=dict)


@_event("detect")
class Detected(AuditEvent):
    """Faces located on a photo, with no identity: nothing was embedded, compared or stored. Locating
    a face and its landmarks is processing of biometric data all the same (docs/PRIVACY.md), so who
    looked at which photo (its hash), with which detector and how many faces it found is recorded."""

    OMIT_NONE = frozenset({"model_id", "faces", "error"})
    outcome: str  # ok | error
    model_id: str | None = None
    faces: int | None = None
    error: str | None = None


# ---- the compatibility surface (api/compreface/) -------------------------------------------------------
@_event("apikey.compat")
class CompatKeyBound(AuditEvent):
    """A compatibility key's binding, made in the transaction that created the key: the collection,
    service type, roles and fixed purpose (the entry's purpose and case columns) it acts under."""

    prefix: str
    protocol: str
    service: str
    roles: list[str]


@_event("subject.rename")
class SubjectRenamed(AuditEvent):
    """A subject's name changed (CompreFace's rename); names stay out of the log, ids name the person."""

    subject_id: int


@_event("samples.erase")
class SamplesErased(AuditEvent):
    """Samples erased while their subject and consent record stay (CompreFace's "delete faces"): the
    receipt holds ids, counts and image hashes, never biometric data."""

    SPREAD = "receipt"
    receipt: dict[str, Any] = field(default_factory=dict)


@_event("embed")
class Embedded(AuditEvent):
    """Faces of a photo located and embedded for a caller that asked for the embeddings (CompreFace's
    calculator plugin): nothing was compared or stored."""

    OMIT_NONE = frozenset({"model_id", "faces", "error"})
    outcome: str  # ok | error
    model_id: str | None = None
    faces: int | None = None
    error: str | None = None


@_event("verify")
class FacesVerified(AuditEvent):
    """A 1:1 comparison of one face against each of several (faces of a photo, given embeddings, or
    an enrolled sample): every similarity returned, at which threshold."""

    OMIT_NONE = frozenset({"input", "sample_id", "other_sha256", "similarities", "threshold", "error"})
    outcome: str  # ok | no_face | error
    input: str | None = None  # image | embedding
    sample_id: int | None = None  # the enrolled sample compared against
    other_sha256: str | None = None
    similarities: list[float] | None = None
    threshold: float | None = None
    error: str | None = None


# ---- photo libraries ------------------------------------------------------------------------------------
# ``purpose`` holds the library's declared purpose where it applies; the library's name is in the details.
@_event("library.create")
class LibraryCreated(AuditEvent):
    library: str
    model_id: str
    legal_basis: str
    retention_days: int
    keep_crops: bool


@_event("library.add")
class LibraryPhotosAdded(AuditEvent):
    library: str
    photos_added: int
    photos_skipped: int
    photos_failed: int
    faces_added: int
    faces_blocked: int  # matched an opt-out: never stored
    people_created: int


@_event("library.person")
class LibraryPersonChanged(AuditEvent):
    """A manual decision on people: merge, split, move, remove, hide, feature, recluster."""

    OMIT_NONE = frozenset({"other_person", "faces"})
    library: str
    change: str
    person: int  # the person's number (#N)
    other_person: int | None = None
    faces: list[int] | None = None


@_event("library.name")
class LibraryPersonNamed(AuditEvent):
    """A person linked to a consent record; the name itself is never in the log."""

    library: str
    person: int
    consent_id: int


@_event("library.search")
class LibrarySearched(AuditEvent):
    OMIT_NONE = frozenset({"threshold", "threshold_fmr", "faces", "matches", "error"})
    library: str
    outcome: str  # ok | no_face | error
    threshold: float | None = None
    threshold_fmr: float | None = None
    faces: int | None = None
    matches: list[Any] | None = None  # per probe face: [person number or None, [[face id, score]...]]
    error: str | None = None


@_event("library.erase")
class LibraryPersonErased(AuditEvent):
    """The receipt of a person's erasure from a library: counts, never biometric data."""

    SPREAD = "receipt"
    receipt: dict[str, Any] = field(default_factory=dict)


@_event("library.recluster")
class LibraryReclustered(AuditEvent):
    library: str
    faces: int
    people_before: int
    people_after: int
    pinned_faces: int
