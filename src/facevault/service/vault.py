"""The use cases. This is the only module that touches store, index and audit log together; the CLI,
the API and the web UI call these methods and nothing below them.

Consistency rule: the store is written first (one transaction per use case, audit entry included),
the index second. A crash in between leaves the index behind the store, which the index loader notices
(its count differs from the store's) and repairs by rebuilding from the store; search results are
always re-checked against the store, so an index entry whose sample is gone is never returned.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from .. import audit, calibration, crops, imaging
from ..config import Settings, load_settings
from ..crops import FaceCrop
from ..errors import (
    ConfigError,
    ConflictError,
    ConsentError,
    FaceVaultError,
    InputError,
    IntegrityError,
    ModelMismatchError,
    NoFaceError,
    NotFoundError,
    PurposeRequiredError,
)
from ..index import VectorIndex, discard_index, open_index
from .migration import MigrationOperations
from ..models import get_pack
from ..pipeline import Pipeline, ProcessedFace
from ..protection import TemplateKey, load_keyring
from .privacy_ops import PrivacyOperations
from ..quality import QualityGate
from ..results import (
    DUPLICATE_IMAGE_MESSAGE,
    Candidate,
    DoctorReport,
    EnrollOutcome,
    FaceResult,
    MatchedSample,
    SearchResult,
    VerifyResult,
)
from ..store import Store, utcnow
from ..store.database import as_utc

log = logging.getLogger("facevault")

ImageInput = str | os.PathLike[str] | tuple[str, bytes]

SAMPLES_PER_CANDIDATE = 5


@dataclass
class _LoadedIndex:
    index: VectorIndex
    stamp: object  # the index's own change marker when we loaded it (file mtime, Milvus count...)


@dataclass
class _SharedState:
    """Per-process caches shared by every actor view of one vault (see ``Vault.acting_as``)."""

    indexes: dict[int, _LoadedIndex] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    # FAISS indexes are not safe for a search during an add; one lock per process orders them.
    lock: threading.RLock = field(default_factory=threading.RLock)
    flock_depth: int = 0


def _source_name(item: ImageInput) -> str:
    return item[0] if isinstance(item, tuple) else str(item)


class Vault(PrivacyOperations, MigrationOperations):
    """An open vault: one store, its indexes, its audit log."""

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str | None = None,
        role: str | None = None,
        create_keys: bool = False,
    ) -> None:
        self.settings = settings
        self.actor = actor or os.environ.get("USER") or "local"
        self.role = role
        self.request_id: str | None = None
        self.store = Store.for_settings(settings, create=create_keys)  # SQLite, or the --db chosen at init
        self._shared = _SharedState()
        self._indexes = self._shared.indexes
        self._pipelines = self._shared.pipelines
        self._index_spec = self._resolve_index_spec()
        self.keys = load_keyring(settings.key_path, create=create_keys)
        from ..models.packs import ensure_registered, models_dir

        ensure_registered(models_dir(settings.home))  # installed packs and their calibration tables

    @property
    def index_backend(self) -> str:
        return self._index_spec

    def acting_as(self, actor: str, role: str | None = None, request_id: str | None = None) -> Vault:
        """A view of this vault that records ``actor``, ``role`` and ``request_id`` in every audit entry it
        writes and shares this vault's caches (loaded models and indexes): what a server uses per request."""
        view = copy.copy(self)
        view.actor = actor
        view.role = role
        view.request_id = request_id
        return view

    # ---- keys, protected templates, the log -------------------------------------------------------
    def _log(self, conn: Connection, action: str, **fields: Any) -> int:
        if self.request_id:
            fields["details"] = {**(fields.get("details") or {}), "request_id": self.request_id}
        return audit.append(conn, action, key=self.keys.audit_key, actor=self.actor, role=self.role, **fields)

    def _current_key(self, conn: Connection | None = None) -> TemplateKey:
        if conn is None:
            with self.store.begin() as c:
                return self._current_key(c)
        version = self.store.get_meta(conn, "template_key_version")
        return self.keys.key(int(version or 1))

    @staticmethod
    def _context(collection: dict[str, Any]) -> bytes:
        """Associated data binding a stored template to its collection and model."""
        return f"sample:{collection['id']}:{collection['model_id']}".encode()

    def _add_crop(
        self, conn: Connection, collection: dict[str, Any], sample_id: int, crop: FaceCrop, key: TemplateKey
    ) -> None:
        """Store a sample's face crop, encrypted under ``key`` and bound to collection and sample."""
        self.store.add_crop(
            conn,
            sample_id=sample_id,
            collection_id=collection["id"],
            media_type=crop.media_type,
            size=crop.size,
            box=crop.box,
            blob=crops.seal(key, crop.data, collection["id"], sample_id),
            key_version=key.version,
        )

    def _still_pinned(self, conn: Connection, collection: dict[str, Any]) -> dict[str, Any]:
        """The collection as stored now, inside the caller's transaction; refused when it was deleted or
        moved to another model since ``collection`` was read (vectors already made would be of the old
        model)."""
        now = self.store.get_collection(conn, collection["name"])
        pinned = ("id", "model_id", "dim")
        if any(now[k] != collection[k] for k in pinned):
            raise ConflictError(
                f"collection {collection['name']!r} moved to model {now['model_id']} while this request ran; "
                "nothing was stored, run it again",
                code="collection_changed",
            )
        return now

    def _open_blob(self, collection: dict[str, Any], blob: bytes, version: int) -> np.ndarray:
        return self.keys.key(version).open(blob, self._context(collection), collection["dim"])

    def _open_hits(self, collection: dict[str, Any], hits: dict[int, Any]) -> dict[int, Any]:
        for hit in hits.values():
            hit.vector = self._open_blob(collection, hit.blob, hit.key_version)
        return hits

    def _resolve_index_spec(self) -> str:
        """The index backend is chosen at ``init`` and remembered in the store, so later commands can
        never silently open a different backend."""
        wanted = self.settings.index
        if not Store.exists_for(self.settings) or not self.store.is_initialised():
            return wanted or "faiss"
        with self.store.begin() as conn:
            stored = self.store.get_meta(conn, "index")
            if stored is None:
                self.store.set_meta(conn, "index", wanted or "faiss")
                return wanted or "faiss"
        if wanted and wanted != stored:
            raise ConfigError(f"this vault uses the index backend {stored!r}, not {wanted!r}")
        return stored

    # ---- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, settings: Settings, **kwargs: Any) -> Vault:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.index_dir.mkdir(parents=True, exist_ok=True)
        vault = cls(settings, create_keys=True, **kwargs)
        vault.store.create_schema()
        vault._index_spec = vault._resolve_index_spec()
        with vault.store.begin() as conn:
            if vault.store.get_meta(conn, "template_key_version") is None:
                vault.store.set_meta(conn, "template_key_version", str(vault.keys.newest().version))
        return vault

    @classmethod
    def open_existing(cls, settings: Settings, **kwargs: Any) -> Vault:
        if not Store.exists_for(settings):
            raise NotFoundError(
                f"no vault at {settings.home} (run `facevault init` or set FACEVAULT_HOME)",
                code="vault_not_found",
            )
        vault = cls(settings, **kwargs)
        if not vault.store.is_initialised():
            raise IntegrityError(f"{vault.store.display_url} is not a facevault database")
        vault.store.check_schema()  # a vault of an older version: `facevault init` upgrades it
        vault.forget_unused_keys()  # finishes a key rotation that was interrupted
        return vault

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers -------------------------------------------------------------------------------------
    def pipeline(self, model_id: str) -> Pipeline:
        with self._shared.lock:  # one pipeline per model per process, even under concurrent first use
            pipe = self._pipelines.get(model_id)
            if pipe is None:
                pipe = Pipeline.for_model(model_id, self.settings)
                self._pipelines[model_id] = pipe
            return pipe

    @property
    def photos_dir(self) -> Path:
        """Where the server keeps copies of uploaded enrollment photos (for review thumbnails)."""
        return self.settings.home / "photos"

    def get_sample(self, collection: str, sample_id: int) -> dict[str, Any]:
        """One sample's record (no template): subject, source image, box, quality."""
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            hit = self.store.sample_hits(conn, [sample_id]).get(sample_id)
            if hit is None or self.store.sample_collection(conn, sample_id) != coll["id"]:
                raise NotFoundError(f"no sample #{sample_id} in {collection!r}", code="sample_not_found")
        return {
            "sample_id": hit.sample_id,
            "subject_id": hit.subject_id,
            "name": hit.subject_name,
            "external_id": hit.external_id,
            "image": hit.image_source,
            "image_sha256": hit.image_sha256,
            "box": [round(v, 1) for v in hit.box],
        }

    def _decode(self, item: ImageInput) -> imaging.DecodedImage:
        s = self.settings
        if isinstance(item, tuple):
            name, data = item
            return imaging.decode_image(
                data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, name=name
            )
        return imaging.load_image(item, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)

    def _index_path(self, collection_id: int) -> Path:
        return self.settings.index_dir / f"collection-{collection_id}.faiss"

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Exclusive across processes (flock), re-entrant within this object."""
        shared = self._shared
        with shared.lock:
            if shared.flock_depth:
                shared.flock_depth += 1
                try:
                    yield
                finally:
                    shared.flock_depth -= 1
                return
            self.settings.index_dir.mkdir(parents=True, exist_ok=True)
            with open(self.settings.index_dir / ".lock", "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                shared.flock_depth = 1
                try:
                    yield
                finally:
                    shared.flock_depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _open_index(self, collection: dict[str, Any]) -> VectorIndex:
        return open_index(
            self._index_spec, self._index_path(collection["id"]), collection["dim"], collection["model_id"]
        )

    def _load_index(self, collection: dict[str, Any]) -> _LoadedIndex:
        """The collection's index, reloaded if another process rewrote its file since we read it."""
        cid = collection["id"]
        cached = self._indexes.get(cid)
        if cached is None or cached.index.stamp() != cached.stamp:
            try:
                idx = self._open_index(collection)
                stamp = idx.stamp()
            except ModelMismatchError as exc:
                # The index holds another model's vectors: left behind by a collection migration that
                # stopped between its store commit and its index rebuild. The store is the truth; a
                # caller whose view of the collection is the stale one is refused instead.
                with self.store.begin() as conn:
                    self._still_pinned(conn, collection)
                log.warning("%s; rebuilding from the store", exc)
                discard_index(self._index_spec, self._index_path(cid))
                idx = self._open_index(collection)
                stamp = -2
            except IntegrityError as exc:
                log.warning("%s; rebuilding from the store", exc)
                discard_index(self._index_spec, self._index_path(cid))
                idx = self._open_index(collection)
                stamp = -2
            cached = _LoadedIndex(idx, stamp)
            self._indexes[cid] = cached
        return cached

    def _index(self, collection: dict[str, Any], store_count: int | None = None) -> VectorIndex:
        """The collection's index, rebuilt from the store if it does not hold exactly the store's
        sample count (a crash between a store commit and the index write). ``store_count``: the count
        the caller has just read in its own transaction (saves one)."""
        cached = self._load_index(collection)
        if store_count is not None and store_count == len(cached.index):
            return cached.index
        with self.store.begin() as conn:
            if self.store.count_samples(conn, collection["id"]) == len(cached.index):
                return cached.index
        # Another process may be between its store commit and its index save: wait for the index lock
        # and look again before concluding that a rebuild is needed.
        with self._index_lock():
            cached = self._load_index(collection)
            self._ensure_complete(collection, cached)
        return cached.index

    def _ensure_complete(
        self, collection: dict[str, Any], cached: _LoadedIndex, expected: int | None = None
    ) -> None:
        """Rebuild the index unless it holds the store's sample count (``expected``: counted by the
        caller inside the transaction it just committed, under the index lock)."""
        if expected is None:
            with self.store.begin() as conn:
                expected = self.store.count_samples(conn, collection["id"])
        if len(cached.index) != expected:
            log.warning(
                "index of %r holds %d vectors, store %d: rebuilding",
                collection["name"],
                len(cached.index),
                expected,
            )
            self._rebuild(collection, cached.index)
            cached.stamp = cached.index.stamp()

    def _rebuild(self, collection: dict[str, Any], idx: VectorIndex) -> int:
        with self._index_lock():
            idx.reset()
            with self.store.begin() as conn:
                for rows in self.store.iter_sample_blobs(conn, collection["id"]):
                    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                    vecs = np.stack([self._open_blob(collection, r[2], r[3]) for r in rows])
                    idx.add(ids, vecs)
            idx.save()
        return len(idx)

    def _apply_to_index(
        self,
        collection: dict[str, Any],
        add: tuple[np.ndarray, np.ndarray] | None = None,
        remove: Sequence[int] = (),
        store_count: int | None = None,
    ) -> None:
        """Apply a change the store has already committed, then save the index. ``store_count``: the
        collection's sample count read in that commit (the caller holds the index lock across both)."""
        with self._index_lock():
            cached = self._load_index(collection)
            if remove:
                cached.index.remove(np.asarray(remove, dtype=np.int64))
            if add is not None:
                cached.index.add(*add)
            cached.index.save()
            cached.stamp = cached.index.stamp()
            self._ensure_complete(collection, cached, store_count)

    def _threshold(
        self,
        model_id: str,
        fmr: float | None,
        threshold: float | None,
        default_fmr: float,
    ) -> tuple[float, float]:
        cal = calibration.for_model(model_id)
        if threshold is not None:
            if not -1.0 <= threshold <= 1.0:
                raise ConfigError(f"threshold must be a similarity between -1 and 1, got {threshold}")
            return float(threshold), cal.fmr_at(threshold)
        target = default_fmr if fmr is None else fmr
        return cal.threshold_for(target), float(target)

    def _search_default_fmr(self, collection: dict[str, Any]) -> float:
        s = self.settings
        if s.search_fmr > 0:
            return s.search_fmr
        with self.store.begin() as conn:
            n = self.store.count_samples(conn, collection["id"])
        return calibration.search_fmr_for_gallery(n, s.search_fpir, s.search_max_fmr)

    # ---- collections ---------------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        model: str | None = None,
        *,
        purpose: str | None = None,
        legal_basis: str | None = None,
        retention_days: int = 1095,
        keep_crops: bool = False,
    ) -> dict[str, Any]:
        """A collection pinned to ``model``. ``keep_crops``: keep an encrypted face crop of every enrolled
        sample, so the collection can later move to another model pack (``migrate_collection``)."""
        name = name.strip()
        if not name:
            raise InputError("collection name must not be empty")
        model_id = model or self.settings.default_model
        pack = get_pack(model_id)
        calibration.for_model(model_id)  # refuse models we cannot put an honest threshold on
        with self.store.begin() as conn:
            if not 1 <= retention_days <= 1095:
                raise InputError("retention must be between 1 day and 3 years (1095 days)")
            row = self.store.create_collection(
                conn,
                name,
                model_id,
                pack.dim,
                purpose=purpose,
                legal_basis=legal_basis,
                retention_days=retention_days,
                keep_crops=bool(keep_crops),
            )
            details: dict[str, Any] = {"model_id": model_id, "keep_crops": bool(keep_crops)}
            accepted = self._license_acceptance(model_id)
            if accepted is not None:  # the vault's own, tamper-evident record of who accepted what
                details["license_acceptance"] = accepted
            self._log(conn, "collection.create", collection=name, details=details)
        return row

    def _license_acceptance(self, model_id: str) -> dict[str, Any] | None:
        from ..models.builtin import license_acceptance
        from ..models.packs import models_dir

        return license_acceptance(model_id, models_dir(self.settings.home))

    def list_collections(self) -> list[dict[str, Any]]:
        with self.store.begin() as conn:
            return self.store.list_collections(conn)

    def get_collection(self, name: str) -> dict[str, Any]:
        with self.store.begin() as conn:
            return self.store.get_collection(conn, name)

    def delete_collection(self, name: str) -> dict[str, int]:
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, name)
            counts = self.store.delete_collection(conn, coll["id"])
            self._log(conn, "collection.delete", collection=name, details=counts)
        with self._index_lock():
            discard_index(self._index_spec, self._index_path(coll["id"]))
            self._indexes.pop(coll["id"], None)
        shutil.rmtree(self.photos_dir / f"c{coll['id']}", ignore_errors=True)
        self.store.checkpoint()
        return counts

    # ---- subjects ------------------------------------------------------------------------------------
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
    ) -> dict[str, Any]:
        """Create a subject together with the consent record that allows it to exist."""
        name = (name or "").strip()
        if not name:
            raise InputError("subject name must not be empty")
        if not (purpose or "").strip():
            raise ConsentError("a consent purpose is required")
        if (consent_text is None) == (consent_file is None):
            raise ConsentError("give exactly one piece of consent evidence: a file or a text")
        if consent_file is not None:
            evidence = imaging.read_file_bytes(consent_file, max_bytes=50 * 1024 * 1024)
            if not evidence:
                raise ConsentError(f"consent file {consent_file} is empty")
            kind, evidence_name = "file", Path(consent_file).name
        else:
            assert consent_text is not None
            if not consent_text.strip():
                raise ConsentError("consent text must not be empty")
            evidence, kind, evidence_name = consent_text.encode("utf-8"), "text", None
        expires_at = _parse_expiry(expires)
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise ConsentError(f"consent expiry {expires_at.date()} is in the past")
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            consent_id = self.store.add_consent(
                conn,
                purpose=purpose.strip(),
                granted_by=(consent_by or name).strip(),
                granted_at=now,
                expires_at=expires_at,
                evidence_kind=kind,
                evidence_name=evidence_name,
                evidence_sha256=hashlib.sha256(evidence).hexdigest(),
            )
            sid = self.store.add_subject(conn, coll["id"], name, external_id, consent_id)
            self._log(
                conn,
                "subject.add",
                purpose=purpose,
                collection=collection,
                details={"subject_id": sid, "consent_id": consent_id},
            )
            return self._subject_view(conn, coll, self.store.find_subject(conn, coll["id"], f"#{sid}"))

    def _subject_view(
        self, conn: Connection, coll: dict[str, Any], subj: dict[str, Any], with_samples: bool = False
    ) -> dict[str, Any]:
        consent = self.store.get_consent(conn, subj["consent_id"])
        view = {
            "id": subj["id"],
            "collection": coll["name"],
            "name": subj["name"],
            "external_id": subj["external_id"],
            "created_at": as_utc(subj["created_at"]).isoformat(),  # type: ignore[union-attr]
            "consent": {
                "id": consent["id"],
                "purpose": consent["purpose"],
                "granted_by": consent["granted_by"],
                "granted_at": as_utc(consent["granted_at"]).isoformat(),  # type: ignore[union-attr]
                "expires_at": _iso(consent["expires_at"]),
                "withdrawn_at": _iso(consent["withdrawn_at"]),
                "evidence_kind": consent["evidence_kind"],
                "evidence_name": consent["evidence_name"],
                "evidence_sha256": consent["evidence_sha256"],
            },
        }
        if with_samples:
            samples = self.store.subject_samples(conn, subj["id"])
            view["samples"] = [
                {
                    "sample_id": s["id"],
                    "model_id": s["model_id"],
                    "image": s["source"],
                    "image_sha256": s["sha256"],
                    "box": [round(s[k], 1) for k in ("box_x1", "box_y1", "box_x2", "box_y2")],
                    "quality": s["quality"],
                    "created_at": _iso(s["created_at"]),
                }
                for s in samples
            ]
        return view

    def list_subjects(self, collection: str) -> list[dict[str, Any]]:
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            return [
                {"id": s["id"], "name": s["name"], "external_id": s["external_id"], "samples": s["samples"]}
                for s in self.store.list_subjects(conn, coll["id"])
            ]

    def get_subject(self, collection: str, subject: str) -> dict[str, Any]:
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            subj = self.store.find_subject(conn, coll["id"], subject)
            return self._subject_view(conn, coll, subj, with_samples=True)

    def delete_subject(self, collection: str, subject: str) -> dict[str, Any]:
        """Same as ``erase_subject``: deleting a person always erases every trace of their face."""
        receipt = self.erase_subject(collection, subject, reason="deleted")
        return {**receipt, "samples_removed": receipt["samples_erased"]}

    # ---- enrollment ----------------------------------------------------------------------------------
    def enroll(
        self, collection: str, subject: str, images: Sequence[ImageInput], *, largest: bool = False
    ) -> list[EnrollOutcome]:
        """Enroll each image as one sample of ``subject``. Every image gets an outcome; a bad image never
        stops the others, and a rejected image leaves nothing behind."""
        with self.store.begin() as conn:  # one read for everything enrollment checks against
            coll = self.store.get_collection(conn, collection)
            subj = self.store.find_subject(conn, coll["id"], subject)
            consent = self.store.get_consent(conn, subj["consent_id"])
            _require_valid_consent(consent)
            key = self._current_key(conn)
            optout_rows = self.store.optouts_for(conn, None, coll["name"])
            samples_now = self.store.count_samples(conn, coll["id"])
        guard = self._optout_guard(coll, key, optout_rows)  # may load older packs: outside the transaction
        pipe = self.pipeline(coll["model_id"])
        if pipe.model_id != coll["model_id"]:
            raise ModelMismatchError("pipeline and collection models differ")
        s = self.settings
        gate = QualityGate(
            s.enroll_min_eye_distance, s.enroll_min_sharpness, s.enroll_max_yaw, s.enroll_max_roll
        )
        conflict_threshold, _ = self._threshold(coll["model_id"], s.conflict_fmr, None, s.conflict_fmr)
        index = self._index(coll, samples_now)

        outcomes: list[EnrollOutcome] = []
        accepted: list[
            tuple[EnrollOutcome, imaging.DecodedImage, ProcessedFace, np.ndarray, FaceCrop | None]
        ] = []
        seen: set[str] = set()
        for item in images:
            name = _source_name(item)
            out = EnrollOutcome(image=name, status="rejected")
            outcomes.append(out)
            try:
                decoded = self._decode(item)
            except FaceVaultError as exc:
                out.reason, out.message = exc.code, exc.message
                continue
            out.image_sha256 = decoded.sha256
            with self.store.begin() as conn:
                dup = self.store.image_by_sha(conn, coll["id"], decoded.sha256)
            if dup is not None or decoded.sha256 in seen:
                out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
                continue
            faces = pipe.analyze(decoded.pixels, portrait=True)
            if not faces:
                out.reason, out.message = "no_face", "no face was found in the image"
                continue
            if len(faces) > 1 and not largest:
                out.reason = "multiple_faces"
                out.message = f"{len(faces)} faces found; enroll a photo of one person or pass largest=True"
                continue
            face = faces[0]
            out.box, out.quality = face.face.box_list(), face.quality.to_dict()
            reason = gate.rejection(face.quality)
            if reason is not None:
                out.reason, out.message = reason, _quality_message(reason, face, gate)
                continue
            protected = key.protect(face.embedding)
            try:
                blocked = guard.blocks(protected, face.face.box, decoded.pixels, self.pipeline)
            except FaceVaultError as exc:
                out.reason, out.message = exc.code, exc.message
                continue
            if blocked:
                out.reason = "blocked_by_optout"
                out.message = "this person has opted out of face search; the photo cannot be enrolled"
                continue
            with self._shared.lock:
                scores, ids = index.search(protected[None, :], 10)
            conflict = self._conflicting_subject(
                coll, subj["id"], scores[0], ids[0], protected, conflict_threshold
            )
            if conflict is not None:
                out.reason = "identity_conflict"
                out.message = (
                    f"the face already matches subject #{conflict[0]} ({conflict[1]}) "
                    f"at similarity {conflict[2]:.3f}"
                )
                continue
            seen.add(decoded.sha256)
            crop = crops.make_crop(decoded.pixels, face.face.box) if coll["keep_crops"] else None
            accepted.append((out, decoded, face, protected, crop))

        if accepted:
            # Store commit and index update form one step for other processes: one that sees the
            # store ahead of the index waits for this lock instead of rebuilding (and double-adding).
            with self._index_lock():
                new_ids: list[int] = []
                stored: list[tuple[EnrollOutcome, np.ndarray]] = []
                with self.store.begin() as conn:
                    keep = self._still_pinned(conn, coll)["keep_crops"]
                    for out, decoded, face, protected, crop in accepted:
                        image_id = self._add_image_once(
                            conn, coll["id"], decoded.sha256, out.image, decoded.width, decoded.height
                        )
                        if image_id is None:
                            out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
                            continue
                        sample_id = self.store.add_sample(
                            conn,
                            collection_id=coll["id"],
                            subject_id=subj["id"],
                            image_id=image_id,
                            model_id=coll["model_id"],
                            box=face.face.box,
                            quality=face.quality.to_dict(),
                            blob=key.seal(protected, self._context(coll)),
                            key_version=key.version,
                        )
                        if keep and crop is not None:
                            self._add_crop(conn, coll, sample_id, crop, key)
                        new_ids.append(sample_id)
                        stored.append((out, protected))
                    samples_after = self.store.count_samples(conn, coll["id"])
                    if stored:
                        self.store.touch_subject(conn, subj["id"])
                        self._log(
                            conn,
                            "enroll",
                            collection=collection,
                            details={
                                "subject_id": subj["id"],
                                "samples_added": new_ids,
                                "rejected": len(outcomes) - len(stored),
                            },
                        )
                if stored:
                    vectors = np.stack([p for _, p in stored])
                    self._apply_to_index(
                        coll, add=(np.asarray(new_ids, dtype=np.int64), vectors), store_count=samples_after
                    )
                for (out, _), sid in zip(stored, new_ids, strict=True):
                    out.status, out.sample_id = "enrolled", sid
        return outcomes

    def _add_image_once(
        self, conn: Connection, collection_id: int, sha256: str, source: str, width: int, height: int
    ) -> int | None:
        """The new image's row id, or None (a duplicate) when another enrollment,
        in this or another process, committed the same image after this one first checked. Write
        transactions are serialised per vault database (BEGIN IMMEDIATE on SQLite, an advisory lock on
        PostgreSQL), so this re-check cannot race; the savepoint is a second guard that turns the
        (collection, sha256) unique key's error into the same answer."""
        if self.store.image_by_sha(conn, collection_id, sha256) is not None:
            return None
        try:
            with conn.begin_nested():
                return self.store.add_image(conn, collection_id, sha256, source, width, height)
        except sa_exc.IntegrityError:
            return None

    def _conflicting_subject(
        self,
        coll: dict[str, Any],
        subject_id: int,
        scores: np.ndarray,
        ids: np.ndarray,
        vector: np.ndarray,
        threshold: float,
    ) -> tuple[int, str, float] | None:
        cand = [int(i) for i, sc in zip(ids, scores, strict=True) if i >= 0 and sc >= threshold - 1e-4]
        if not cand:
            return None
        with self.store.begin() as conn:
            self._still_pinned(conn, coll)  # templates of another model cannot be opened as this one's
            hits = self._open_hits(coll, self.store.sample_hits(conn, cand))
        best: tuple[int, str, float] | None = None
        for hit in hits.values():
            score = float(hit.vector @ vector)
            if hit.subject_id != subject_id and score >= threshold and (best is None or score > best[2]):
                best = (hit.subject_id, hit.subject_name, score)
        return best

    # ---- search --------------------------------------------------------------------------------------
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
    ) -> SearchResult:
        """Open-set 1:N identification of every face in ``probe``. An empty candidate list means the person
        is not in the gallery at this threshold. Every call is written to the audit log."""
        purpose = _require_purpose(purpose)
        if top_k < 1 or top_k > 1000:
            raise InputError("top must be between 1 and 1000")
        coll = self.get_collection(collection)
        thr, thr_fmr = self._threshold(coll["model_id"], fmr, threshold, self._search_default_fmr(coll))
        try:
            decoded = self._decode(probe)
        except FaceVaultError as exc:
            self._audit_failed("search", exc, purpose=purpose, case_id=case_id, collection=collection)
            raise
        faces = self.pipeline(coll["model_id"]).analyze(decoded.pixels)
        if not faces:
            with self.store.begin() as conn:
                self._log(
                    conn,
                    "search",
                    purpose=purpose,
                    case_id=case_id,
                    collection=collection,
                    probe_sha256=decoded.sha256,
                    details={"outcome": "no_face", "threshold": round(thr, 5)},
                )
            raise NoFaceError("no face was found in the probe image")
        results = self._search_faces(coll, faces, top_k, thr)
        with self.store.begin() as conn:
            seq = self._log(
                conn,
                "search",
                purpose=purpose,
                case_id=case_id,
                collection=collection,
                probe_sha256=decoded.sha256,
                details={
                    "outcome": "ok",
                    "threshold": round(thr, 5),
                    "threshold_fmr": thr_fmr,
                    "top_k": top_k,
                    "faces": len(results),
                    "candidates": [
                        [[c.subject_id, round(c.similarity, 4)] for c in f.candidates] for f in results
                    ],
                },
            )
            if case_id:
                # Candidates are leads for human review, not identifications (EU AI Act Art. 14).
                self._record_review_candidates(conn, case_id, seq, collection, results)
        return SearchResult(
            collection=collection,
            model_id=coll["model_id"],
            probe_sha256=decoded.sha256,
            threshold=round(thr, 5),
            threshold_fmr=thr_fmr,
            top_k=top_k,
            purpose=purpose,
            case_id=case_id,
            audit_seq=seq,
            faces=results,
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
        """1:N search with a precomputed embedding; refused unless it comes from the collection's model."""
        purpose = _require_purpose(purpose)
        coll = self.get_collection(collection)
        if model_id != coll["model_id"]:
            raise ModelMismatchError(
                f"collection {collection!r} holds {coll['model_id']} vectors; a {model_id} vector cannot be "
                "compared with them"
            )
        vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vec.shape[0] != coll["dim"]:
            raise ModelMismatchError(
                f"embedding has {vec.shape[0]} dimensions, collection needs {coll['dim']}"
            )
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        thr, thr_fmr = self._threshold(coll["model_id"], fmr, threshold, self._search_default_fmr(coll))
        candidates = self._candidates(coll, vec, top_k, thr)
        with self.store.begin() as conn:
            self._log(
                conn,
                "search",
                purpose=purpose,
                case_id=case_id,
                collection=collection,
                probe_sha256=hashlib.sha256(vec.astype("<f4").tobytes()).hexdigest(),
                details={
                    "outcome": "ok",
                    "input": "embedding",
                    "threshold": round(thr, 5),
                    "threshold_fmr": thr_fmr,
                    "candidates": [[c.subject_id, round(c.similarity, 4)] for c in candidates],
                },
            )
        return candidates

    def _search_faces(
        self, coll: dict[str, Any], faces: list[ProcessedFace], top_k: int, thr: float
    ) -> list[FaceResult]:
        out = []
        for i, f in enumerate(faces):
            res = FaceResult(
                face_index=i,
                box=f.face.box_list(),
                quality=f.quality.to_dict(),
                searched=True,
                skipped_reason=None,
            )
            if f.quality.eye_distance < self.settings.search_min_eye_distance:
                res.searched, res.skipped_reason = False, "face_too_small"
            else:
                res.candidates = self._candidates(coll, f.embedding, top_k, thr)
            out.append(res)
        return out

    def _candidates(self, coll: dict[str, Any], raw: np.ndarray, top_k: int, thr: float) -> list[Candidate]:
        """Candidates for one unit embedding: index shortlist, then exact scores on the stored templates.
        Both sides are compared in protected form (same secret rotation), which preserves similarity."""
        vec = self._current_key().protect(raw)
        cal = calibration.for_model(coll["model_id"])
        with self._shared.lock:
            index = self._index(coll)
        k = min(len(index), max(50, top_k * SAMPLES_PER_CANDIDATE * 4))
        with self._shared.lock:
            _, ids = index.search(vec[None, :], k)
        with self.store.begin() as conn:
            # A collection migrated since it was read holds the new model's templates: a clean, retryable
            # collection_changed instead of failing to open them (wrong_key).
            self._still_pinned(conn, coll)
            hits = self._open_hits(coll, self.store.sample_hits(conn, [int(i) for i in ids[0] if i >= 0]))
        by_subject: dict[int, list[tuple[float, Any]]] = {}
        for hit in hits.values():
            score = float(hit.vector @ vec)  # exact re-rank on the stored vector
            if score >= thr:
                by_subject.setdefault(hit.subject_id, []).append((score, hit))
        ranked = sorted(by_subject.values(), key=lambda lst: -max(s for s, _ in lst))[:top_k]
        out = []
        for lst in ranked:
            lst.sort(key=lambda p: -p[0])
            best, first = lst[0]
            out.append(
                Candidate(
                    subject_id=first.subject_id,
                    name=first.subject_name,
                    external_id=first.external_id,
                    similarity=round(best, 5),
                    estimated_fmr=float(f"{cal.fmr_at(best):.3g}"),
                    samples=[
                        MatchedSample(
                            sample_id=h.sample_id,
                            similarity=round(s, 5),
                            image=h.image_source,
                            image_sha256=h.image_sha256,
                            box=[round(v, 1) for v in h.box],
                        )
                        for s, h in lst[:SAMPLES_PER_CANDIDATE]
                    ],
                )
            )
        return out

    def _audit_failed(self, action: str, exc: FaceVaultError, **fields: Any) -> None:
        with self.store.begin() as conn:
            self._log(conn, action, details={"outcome": "error", "error": exc.code}, **fields)

    # ---- verification ---------------------------------------------------------------------------------
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
        """1:1: is the (largest) face in ``image_a`` the same person as the one in ``image_b``?"""
        model_id = model or self.settings.default_model
        thr, thr_fmr = self._threshold(model_id, fmr, threshold, self.settings.verify_fmr)
        pipe = self.pipeline(model_id)
        faces = []
        shas = []
        for label, item in (("A", image_a), ("B", image_b)):
            try:
                decoded = self._decode(item)
            except FaceVaultError as exc:
                self._audit_failed("verify", exc, purpose=purpose, case_id=case_id)
                raise
            shas.append(decoded.sha256)
            found = pipe.analyze(decoded.pixels)
            if not found:
                self._audit_failed("verify", NoFaceError("no face"), purpose=purpose, case_id=case_id)
                raise NoFaceError(f"no face was found in image {label} ({_source_name(item)})")
            faces.append(found[0])
        sim = float(faces[0].embedding @ faces[1].embedding)
        cal = calibration.for_model(model_id)
        with self.store.begin() as conn:
            seq = self._log(
                conn,
                "verify",
                purpose=purpose,
                case_id=case_id,
                probe_sha256=shas[0],
                details={
                    "other_sha256": shas[1],
                    "similarity": round(sim, 5),
                    "threshold": round(thr, 5),
                    "same_person": sim >= thr,
                },
            )
        return VerifyResult(
            model_id=model_id,
            similarity=round(sim, 5),
            threshold=round(thr, 5),
            threshold_fmr=thr_fmr,
            estimated_fmr=float(f"{cal.fmr_at(sim):.3g}"),
            same_person=sim >= thr,
            face_a={"box": faces[0].face.box_list(), "quality": faces[0].quality.to_dict()},
            face_b={"box": faces[1].face.box_list(), "quality": faces[1].quality.to_dict()},
            audit_seq=seq,
        )

    # ---- health --------------------------------------------------------------------------------------
    def doctor(self, repair: bool = False) -> DoctorReport:
        """Check that every index holds exactly the store's samples (and only vectors of the collection's
        model) and that the audit chain is intact; with ``repair`` rebuild bad indexes from the store."""
        report = []
        ok = True
        with self.store.begin() as conn:
            colls = self.store.list_collections(conn)
            chain = audit.verify_chain(conn, self.keys.audit_key)
        for coll in colls:
            with self.store.begin() as conn:
                store_ids = self.store.sample_ids(conn, coll["id"])
                models = self.store.models_in_collection(conn, coll["id"])
            path = self._index_path(coll["id"])
            problems: list[str] = []
            foreign = sorted(models - {coll["model_id"]})
            if foreign:
                problems.append(f"samples from other models: {', '.join(foreign)}")
            try:
                index_ids = set(self._open_index(coll).ids().tolist())
            except FaceVaultError as exc:
                problems.append(exc.message)
                index_ids = set()
            missing = len(store_ids - index_ids)
            extra = len(index_ids - store_ids)
            if missing:
                problems.append(f"{missing} stored samples are missing from the index")
            if extra:
                problems.append(f"{extra} index entries have no stored sample")
            entry = {
                "collection": coll["name"],
                "model_id": coll["model_id"],
                "samples": len(store_ids),
                "indexed": len(index_ids),
                "problems": problems,
                "repaired": False,
            }
            if problems:
                ok = False
                if repair and not foreign:
                    with self._index_lock():
                        discard_index(self._index_spec, path)
                        self._indexes.pop(coll["id"], None)
                        entry["indexed"] = self._rebuild(coll, self._open_index(coll))
                    entry["repaired"] = True
            report.append(entry)
        if not chain.ok:
            ok = False
        repaired_all = all(e["repaired"] or not e["problems"] for e in report)
        return DoctorReport(
            ok=ok or (repair and repaired_all and chain.ok),
            collections=report,
            audit=chain.to_dict(),
            repaired=repair and any(e["repaired"] for e in report),
        )

    # ---- index administration -------------------------------------------------------------------------
    def index_info(self, collection: str) -> dict[str, Any]:
        coll = self.get_collection(collection)
        with self._shared.lock:
            info = dict(self._index(coll).info())
        return {**info, "collection": collection, "backend": self.index_backend}

    def index_rebuild(self, collection: str) -> dict[str, Any]:
        """Rebuild a collection's index from the store (the store is the truth)."""
        coll = self.get_collection(collection)
        with self._index_lock():
            cached = self._load_index(coll)
            count = self._rebuild(coll, cached.index)
            cached.stamp = cached.index.stamp()
        return {"collection": collection, "indexed": count}

    def index_tune(self, collection: str, **values: Any) -> dict[str, Any]:
        """Change search-time or build settings of a collection's index (saved with it)."""
        coll = self.get_collection(collection)
        with self._index_lock():
            cached = self._load_index(coll)
            result = cached.index.tune(**values)
            cached.index.save()
            cached.stamp = cached.index.stamp()
        return {"collection": collection, **result}

    def audit_entries(self, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """Newest first; filters: action, actor, case_id, collection, since, until."""
        with self.store.begin() as conn:
            return audit.entries(conn, limit, **filters)

    def verify_audit(self) -> audit.ChainStatus:
        with self.store.begin() as conn:
            return audit.verify_chain(conn, self.keys.audit_key)


def _require_purpose(purpose: str | None) -> str:
    """Every search states why it is run; the answer goes into the audit log."""
    purpose = (purpose or "").strip()
    if not purpose:
        raise PurposeRequiredError("a search needs a purpose (why is this search being run?)")
    return purpose


def _iso(value: datetime | None) -> str | None:
    v = as_utc(value)
    return v.isoformat() if v else None


def _parse_expiry(value: date | datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InputError(f"expiry {value!r} is not a date (use YYYY-MM-DD)") from exc
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _require_valid_consent(consent: dict[str, Any]) -> None:
    if consent["withdrawn_at"] is not None:
        raise ConsentError(
            "consent for this subject was withdrawn; nothing can be enrolled", code="consent_withdrawn"
        )
    exp = as_utc(consent["expires_at"])
    if exp is not None and exp <= utcnow():
        raise ConsentError(f"consent for this subject expired on {exp.date()}", code="consent_expired")


def _quality_message(reason: str, face: ProcessedFace, gate: QualityGate) -> str:
    q = face.quality
    if reason == "face_too_small":
        return (
            f"eyes are {q.eye_distance:.0f} px apart; enrollment needs at least {gate.min_eye_distance:.0f}"
        )
    if reason == "extreme_pose":
        return (
            f"head pose yaw {q.yaw:.0f}°, roll {q.roll:.0f}° is beyond {gate.max_yaw:.0f}°/"
            f"{gate.max_roll:.0f}°; use a frontal photo"
        )
    return f"sharpness {q.sharpness:.1f} is below {gate.min_sharpness:.1f}; use a sharper photo"


def open_vault(
    home: str | os.PathLike[str] | None = None,
    *,
    create: bool = False,
    actor: str | None = None,
    **overrides: Any,
) -> Vault:
    settings = load_settings(home, **overrides)
    return Vault.create(settings, actor=actor) if create else Vault.open_existing(settings, actor=actor)
