"""``Vault``: the public facade of facevault (``facevault.open(...)``). Each method is one use case,
implemented in its own module of ``facevault.service`` over the vault's ``ServiceContext``.

Consistency rule: the store is written first (one transaction per use case, audit entry included), the
index second (under the index manager's lock, so other processes see both as one step). A crash in
between leaves the index behind the store, which the index manager notices (its count differs from the
store's) and repairs by rebuilding from the store; search results are always re-checked against the
store, so an index entry whose sample is gone is never returned.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import audit
from ..config import DEFAULT_RETENTION_DAYS, Settings, load_settings
from ..errors import FaceVaultError, IntegrityError, NotFoundError
from ..pipeline import Pipeline
from ..protection import KeyRing
from ..results import (
    ApiKeyInfo,
    AuditEntry,
    Candidate,
    CollectionDeletion,
    CollectionInfo,
    ConsentView,
    DetectorChanged,
    DetectResult,
    DoctorReport,
    EnrollOutcome,
    ErasureReceipt,
    IndexRebuilt,
    KeepCropsChanged,
    KeyRotation,
    MigrationReport,
    OptoutReport,
    Principal,
    ProcessingRecord,
    RetentionChanged,
    RetentionDue,
    ReviewCandidate,
    ReviewStatus,
    SampleRecord,
    SearchResult,
    SubjectDeleted,
    SubjectInfo,
    SubjectSummary,
    SweepReport,
    VerifyResult,
)
from ..store import Store
from . import (
    api_keys,
    collections,
    compat_faces,
    compat_keys,
    compat_match,
    consent,
    detect,
    enroll,
    erasure,
    health,
    key_rotation,
    migration,
    optout,
    records,
    retention,
    review,
    search,
    search_many,
    subjects,
    verify,
)
from .context import ImageInput, ServiceContext
from .library_facade import Libraries
from .prefetch import ProbeAnalysis

__all__ = ["ImageInput", "Vault", "open_vault"]


class Vault:
    """An open vault: one store, its indexes, its audit log."""

    def __init__(self, settings: Settings, *, actor: str | None = None, create_keys: bool = False) -> None:
        self._ctx = ServiceContext(settings, actor=actor, create=create_keys)

    # ---- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, settings: Settings, **kwargs: Any) -> Vault:
        """Create (or upgrade and open) the vault. Its folder and everything in it is made private to
        this user: folders 0700 and files 0600 (the database and its WAL/SHM, keys, indexes, photos,
        models), the folder first, so that nothing created inside it is ever reachable by others;
        SQLite gives a WAL/SHM file made later the mode of the database file."""
        home = settings.home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
        settings.index_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        vault = cls(settings, create_keys=True, **kwargs)
        ctx = vault._ctx
        ctx.store.create_schema()
        ctx.indexes.spec = ctx.resolve_index_spec()
        with ctx.write() as conn:
            if ctx.store.get_meta(conn, "template_key_version") is None:
                ctx.store.set_meta(conn, "template_key_version", str(ctx.keys.newest().version))
        for folder, dirs, files in os.walk(home):  # does not follow links: only the vault's own files
            for name, private in [*((d, 0o700) for d in dirs), *((f, 0o600) for f in files)]:
                path = os.path.join(folder, name)
                try:
                    mode = os.lstat(path).st_mode
                    if not stat.S_ISLNK(mode) and mode & 0o077:
                        os.chmod(path, stat.S_IMODE(mode) & private)
                except OSError:  # gone meanwhile (a temp file), or not ours: the 0700 folder covers it
                    pass
        return vault

    @classmethod
    def open_existing(cls, settings: Settings, **kwargs: Any) -> Vault:
        if not Store.exists_for(settings):
            raise NotFoundError(
                f"no vault at {settings.home} (run `facevault init` or set FACEVAULT_HOME)",
                code="vault_not_found",
            )
        vault = cls(settings, **kwargs)
        store = vault._ctx.store
        if not store.is_initialised():
            raise IntegrityError(f"{store.display_url} is not a facevault database")
        store.check_schema()  # a vault of an older version: `facevault init` upgrades it
        vault.forget_unused_keys()  # finishes a key rotation that was interrupted
        erasure.finish_pending_erasures(vault._ctx)  # finishes an erasure that a crash interrupted
        optout.finish_pending_optouts(vault._ctx)  # and the erasures of an opt-out a crash interrupted
        return vault

    def close(self) -> None:
        self._ctx.store.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def acting_as(self, actor: str, role: str | None = None, request_id: str | None = None) -> Vault:
        """A view of this vault that records ``actor``, ``role`` and ``request_id`` in every audit entry it
        writes and shares this vault's caches (loaded models and indexes): what a server uses per request."""
        view = object.__new__(Vault)
        view._ctx = self._ctx.as_actor(actor, role, request_id)
        return view

    # ---- what the vault is ------------------------------------------------------------------------------
    @property
    def context(self) -> ServiceContext:
        """The context the use cases run in (for the service's own modules and for tests)."""
        return self._ctx

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    @property
    def libraries(self) -> Libraries:
        """The photo-library use cases (``service/library*.py``)."""
        return Libraries(self._ctx)

    @property
    def store(self) -> Store:
        return self._ctx.store

    @property
    def keys(self) -> KeyRing:
        """The template-protection and audit keys (kept outside the database)."""
        return self._ctx.keys

    @property
    def photos_dir(self) -> Path:
        """Where the server keeps copies of uploaded enrollment photos (for review thumbnails)."""
        return self._ctx.settings.photos_dir

    @property
    def request_id(self) -> str | None:
        return self._ctx.request_id

    @property
    def actor(self) -> str:
        return self._ctx.actor

    @property
    def role(self) -> str | None:
        return self._ctx.role

    @property
    def index_backend(self) -> str:
        return self._ctx.indexes.spec

    def pipeline(self, model_id: str) -> Pipeline:
        return self._ctx.pipeline(model_id)

    # ---- collections ------------------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        model: str | None = None,
        *,
        purpose: str | None = None,
        legal_basis: str | None = None,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        keep_crops: bool = False,
        detector: str | None = None,
    ) -> CollectionInfo:
        return collections.create_collection(
            self._ctx,
            name,
            model,
            purpose=purpose,
            legal_basis=legal_basis,
            retention_days=retention_days,
            keep_crops=keep_crops,
            detector=detector,
        )

    def list_collections(self) -> list[CollectionInfo]:
        return [CollectionInfo.from_row(r) for r in collections.list_collections(self._ctx)]

    def get_collection(self, name: str) -> CollectionInfo:
        return CollectionInfo.from_row(collections.get_collection(self._ctx, name))

    def delete_collection(self, name: str) -> CollectionDeletion:
        return collections.delete_collection(self._ctx, name)

    def set_retention(self, collection: str, days: int) -> RetentionChanged:
        return collections.set_retention(self._ctx, collection, days)

    def set_keep_crops(self, collection: str, keep: bool) -> KeepCropsChanged:
        return collections.set_keep_crops(self._ctx, collection, keep)

    def set_detector(self, collection: str, detector: str | None) -> DetectorChanged:
        """Find the collection's faces with ``detector`` from now on (None: the pack's own; audited)."""
        return collections.set_detector(self._ctx, collection, detector)

    def migrate_collection(
        self,
        name: str,
        to_model_id: str,
        *,
        workers: int | None = None,
        progress: migration.Progress | None = None,
    ) -> MigrationReport:
        """Re-embed every sample with another model pack from its stored crop (see service/migration.py)."""
        return migration.migrate_collection(self._ctx, name, to_model_id, workers=workers, progress=progress)

    def index_info(self, collection: str) -> dict[str, Any]:
        return collections.index_info(self._ctx, collection)

    def index_rebuild(self, collection: str) -> IndexRebuilt:
        return collections.index_rebuild(self._ctx, collection)

    def index_tune(self, collection: str, **values: Any) -> dict[str, Any]:
        return collections.index_tune(self._ctx, collection, **values)

    # ---- subjects and consent ---------------------------------------------------------------------------
    def add_subject(
        self,
        collection: str,
        name: str,
        *,
        purpose: str,
        consent_text: str | None = None,
        consent_file: str | os.PathLike[str] | None = None,
        consent_by: str | None = None,
        expires: date | datetime | str | None = None,
        external_id: str | None = None,
    ) -> SubjectInfo:
        """Create a subject together with the consent record that allows it to exist."""
        return subjects.add_subject(
            self._ctx,
            collection,
            name,
            purpose=purpose,
            consent_text=consent_text,
            consent_file=consent_file,
            consent_by=consent_by,
            expires=expires,
            external_id=external_id,
        )

    def list_subjects(self, collection: str) -> list[SubjectSummary]:
        return subjects.list_subjects(self._ctx, collection)

    def get_subject(self, collection: str, subject: str) -> SubjectInfo:
        return subjects.get_subject(self._ctx, collection, subject)

    def get_sample(self, collection: str, sample_id: int) -> SampleRecord:
        return subjects.get_sample(self._ctx, collection, sample_id)

    def delete_subject(self, collection: str, subject: str) -> SubjectDeleted:
        return subjects.delete_subject(self._ctx, collection, subject)

    def erase_subject(
        self, collection: str, subject: str, *, reason: str = "erasure_request"
    ) -> ErasureReceipt:
        return erasure.erase_subject(self._ctx, collection, subject, reason=reason)

    def consent_show(self, collection: str, subject: str) -> ConsentView:
        return consent.consent_show(self._ctx, collection, subject)

    def withdraw_consent(self, collection: str, subject: str) -> ErasureReceipt:
        return consent.withdraw_consent(self._ctx, collection, subject)

    # ---- enrollment, search, verification ----------------------------------------------------------------
    def enroll(
        self, collection: str, subject: str, images: Sequence[ImageInput], *, largest: bool = False
    ) -> list[EnrollOutcome]:
        """Enroll each image as one sample of ``subject``; every image gets an outcome."""
        return enroll.enroll(self._ctx, collection, subject, images, largest=largest)

    def search(
        self,
        collection: str,
        probe: ImageInput,
        *,
        purpose: str,
        case_id: str | None = None,
        top_k: int = 5,
        fmr: float | None = None,
        threshold: float | None = None,
        analysis: ProbeAnalysis | None = None,
    ) -> SearchResult:
        """Open-set 1:N identification of every face in ``probe`` (audited). ``analysis``: see
        ``service.prefetch``."""
        return search.search(
            self._ctx,
            collection,
            probe,
            purpose=purpose,
            case_id=case_id,
            top_k=top_k,
            fmr=fmr,
            threshold=threshold,
            analysis=analysis,
        )

    def search_embedding(
        self,
        collection: str,
        embedding: np.ndarray,
        *,
        model_id: str,
        purpose: str,
        case_id: str | None = None,
        top_k: int = 5,
        fmr: float | None = None,
        threshold: float | None = None,
    ) -> list[Candidate]:
        """1:N search with a precomputed embedding of the collection's model (audited)."""
        return search.search_embedding(
            self._ctx,
            collection,
            embedding,
            model_id=model_id,
            purpose=purpose,
            case_id=case_id,
            top_k=top_k,
            fmr=fmr,
            threshold=threshold,
        )

    def verify(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        model: str | None = None,
        purpose: str = "verification",
        case_id: str | None = None,
        fmr: float | None = None,
        threshold: float | None = None,
    ) -> VerifyResult:
        """1:1: is the (largest) face in ``image_a`` the same person as the one in ``image_b``? (audited)"""
        return verify.verify(
            self._ctx,
            image_a,
            image_b,
            model=model,
            purpose=purpose,
            case_id=case_id,
            fmr=fmr,
            threshold=threshold,
        )

    def detect(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        detector: str | None = None,
        purpose: str | None = None,
        draw: bool = False,
    ) -> DetectResult:
        """Every face in ``image`` with box, landmarks and quality; no identity, nothing stored (audited).
        ``detector``: another detector than the model's own (``models.detectors``)."""
        return detect.detect(self._ctx, image, model=model, detector=detector, purpose=purpose, draw=draw)

    def search_many(
        self, collection: str, probes: Sequence[ImageInput], *, purpose: str, **options: Any
    ) -> Iterator[tuple[ImageInput, SearchResult | FaceVaultError]]:
        """``search`` of each probe in turn (one audit entry each), yielding its result or its error."""
        return search_many.search_many(self._ctx, collection, probes, purpose=purpose, **options)

    # ---- privacy ------------------------------------------------------------------------------------------
    def optout(self, photo: ImageInput, *, collection: str | None = None) -> OptoutReport:
        return optout.optout(self._ctx, photo, collection=collection)

    def retention_due(self, now: datetime | None = None) -> list[RetentionDue]:
        return retention.retention_due(self._ctx, now)

    def retention_sweep(self, now: datetime | None = None) -> SweepReport:
        return retention.retention_sweep(self._ctx, now)

    def retention_policy(self) -> str:
        return retention.retention_policy(self._ctx)

    def review_status(self, case_id: str) -> ReviewStatus:
        return review.review_status(self._ctx, case_id)

    def review(
        self, case_id: str, candidate: int, decision: str, reviewer: str, note: str | None = None
    ) -> ReviewCandidate:
        return review.review(self._ctx, case_id, candidate, decision, reviewer, note)

    def rotate_keys(self) -> KeyRotation:
        return key_rotation.rotate_keys(self._ctx)

    def forget_unused_keys(self) -> list[int]:
        return key_rotation.forget_unused_keys(self._ctx)

    # ---- records and health ------------------------------------------------------------------------
    def audit_entries(self, limit: int = 100, **filters: Any) -> list[AuditEntry]:
        return records.audit_entries(self._ctx, limit, **filters)

    def verify_audit(
        self, checkpoint: str | os.PathLike[str] | Mapping[str, Any] | None = None
    ) -> audit.ChainStatus:
        """The hash chain, the chain head kept outside the database, and (given) a signed checkpoint that
        the log must still extend."""
        return records.verify_audit(self._ctx, checkpoint)

    def audit_checkpoint(self) -> records.Checkpoint:
        """A signed checkpoint of the log (sequence, head MAC, time) to keep somewhere else."""
        return records.audit_checkpoint(self._ctx)

    def acknowledge_chain_break(self, reason: str) -> records.Acknowledgement:
        """An admin's audited acknowledgement of a recorded chain break (verification passes again)."""
        return records.acknowledge_chain_break(self._ctx, reason)

    def audit_export(
        self, *, since: datetime | None = None, until: datetime | None = None, fmt: str = "jsonl"
    ) -> str:
        return records.audit_export(self._ctx, since=since, until=until, fmt=fmt)

    def processing_record(self) -> ProcessingRecord:
        return records.processing_record(self._ctx)

    def doctor(self, repair: bool = False) -> DoctorReport:
        return health.doctor(self._ctx, repair)

    # ---- API keys ----------------------------------------------------------------------------------
    def create_api_key(self, role: str, name: str) -> tuple[str, ApiKeyInfo]:
        """A new API key: (its secret, shown once, and its listing record); audited."""
        return api_keys.create_key(self._ctx, role, name)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        return api_keys.list_keys(self._ctx)

    def revoke_api_key(self, prefix: str) -> ApiKeyInfo:
        return api_keys.revoke_key(self._ctx, prefix)

    def authenticate_key(self, key: str) -> Principal | None:
        return api_keys.authenticate(self._ctx, key)

    def log_login(self, principal: Principal) -> int:
        return api_keys.log_login(self._ctx, principal)

    def api_key_role_counts(self) -> dict[str, int]:
        return api_keys.role_counts(self._ctx)

    # ---- the compatibility surface (CompreFace's protocol: api/compreface/) ------------------------
    def create_compat_key(self, **binding: Any) -> tuple[str, compat_keys.CompatKeyInfo]:
        """A key bound to one collection, service type, roles and fixed purpose (service/compat_keys.py)."""
        return compat_keys.create_compat_key(self._ctx, **binding)

    def authenticate_compat_key(self, key: str) -> compat_keys.CompatPrincipal | None:
        return compat_keys.authenticate_compat(self._ctx, key)

    def compat_recognize(
        self, collection: str, probe: ImageInput, **options: Any
    ) -> compat_match.CompatResult:
        return compat_match.recognize(self._ctx, collection, probe, **options)

    def compat_detect(self, image: ImageInput, **options: Any) -> compat_match.CompatResult:
        return compat_match.detect_faces(self._ctx, image, **options)

    def compat_verify(
        self, source: ImageInput, target: ImageInput, **options: Any
    ) -> compat_match.CompatResult:
        return compat_match.verify_images(self._ctx, source, target, **options)

    def compat_verify_sample(
        self, collection: str, sample_id: int, **options: Any
    ) -> compat_match.CompatResult:
        return compat_match.verify_sample(self._ctx, collection, sample_id, **options)

    def compat_verify_embeddings(
        self, source: Any, targets: Any, **options: Any
    ) -> compat_match.CompatResult:
        return compat_match.verify_embeddings(self._ctx, source, targets, **options)

    def compat_recognize_embeddings(
        self, collection: str, embeddings: Any, **options: Any
    ) -> compat_match.CompatResult:
        return compat_match.recognize_embeddings(self._ctx, collection, embeddings, **options)

    def compat_model(self, collection: str | None) -> str:
        return compat_match.model_of(self._ctx, collection)

    def list_faces(
        self, collection: str, subject: str | None = None, *, page: int = 0, size: int = 20
    ) -> compat_faces.FacesPage:
        return compat_faces.list_faces(self._ctx, collection, subject, page, size)

    def erase_samples(self, collection: str, **which: Any) -> list[compat_faces.SamplesReceipt]:
        """Erase samples while their subjects and consent records stay (receipts in the audit log)."""
        return compat_faces.erase_samples(self._ctx, collection, **which)

    def rename_subject(self, collection: str, subject: str, new_name: str) -> bool:
        return compat_faces.rename_subject(self._ctx, collection, subject, new_name)

    def erase_all_subjects(self, collection: str) -> list[ErasureReceipt]:
        return compat_faces.erase_all_subjects(self._ctx, collection)

    # ---- review with faces, labelled results, single samples (web UI) --------------------------------
    def review_details(self, case_id: str) -> dict[str, Any]:
        return review.review_details(self._ctx, case_id)

    def review_queue(self) -> list[dict[str, Any]]:
        return review.review_queue(self._ctx)

    def enroll_anyway(
        self, collection: str, subject: str, images: Sequence[ImageInput], *, largest: bool = False
    ) -> list[EnrollOutcome]:
        """``enroll``, also for faces that resemble another subject (not for identity conflicts)."""
        return enroll.enroll(self._ctx, collection, subject, images, largest=largest, anyway=True)

    def erase_sample(self, collection: str, subject: str, sample_id: int) -> Any:
        """Erase one sample of a subject (receipt in the audit log); the subject stays."""
        from . import samples

        return samples.erase_sample(self._ctx, collection, subject, sample_id)

    def move_sample(self, collection: str, subject: str, sample_id: int, to: str) -> Any:
        from . import samples

        return samples.move_sample(self._ctx, collection, subject, sample_id, to)

    def keep_review_probe(self, result: SearchResult, probe: ImageInput) -> bool:
        from . import review_probes

        return review_probes.keep(self._ctx, result, probe)

    def review_probe(self, case_id: str, candidate_id: int, shown: str) -> bytes:
        from . import review_probes

        return review_probes.view(self._ctx, case_id, candidate_id, shown)

    def annotate_search(self, probe: ImageInput, result: Any) -> bytes:
        from . import annotate

        return annotate.annotated_search(self._ctx, probe, result)


def open_vault(
    home: str | os.PathLike[str] | None = None,
    *,
    create: bool = False,
    actor: str | None = None,
    **overrides: Any,
) -> Vault:
    settings = load_settings(home, **overrides)
    return Vault.create(settings, actor=actor) if create else Vault.open_existing(settings, actor=actor)
