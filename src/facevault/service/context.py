"""The one context every use case runs in: settings, store, index manager, key ring, audit writer,
pipelines and the acting identity (actor, role, request id).

A ``Vault`` holds one context; ``acting_as`` gives a per-request copy that shares the per-process caches
(loaded models and indexes) and differs only in who is acting.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import Connection

from .. import audit, calibration, faults, imaging
from ..audit_events import AuditEvent, ChainBreak
from ..config import Settings, current_user, models_dir_setting
from ..errors import ConfigError, ConflictError, InputError
from ..index.manager import IndexManager
from ..models.registry import ensure_registered
from ..pipeline import Pipeline
from ..protection import KeyRing, TemplateKey, load_keyring
from ..store import Store

ImageInput = str | os.PathLike[str] | tuple[str, bytes]
log = logging.getLogger("facevault.audit")
Collection = dict[str, Any]  # a collection row as the store returns it


def source_name(item: ImageInput) -> str:
    return item[0] if isinstance(item, tuple) else str(item)


def chain_break_event(facts: audit.BreakFacts) -> ChainBreak:
    def head(h: audit.Head | None) -> dict[str, Any] | None:
        return None if h is None else h.to_dict()

    return ChainBreak(
        problem=facts.problem,
        found=facts.found.to_dict(),
        db_head=head(facts.db_head),
        external_head=head(facts.external_head),
    )


@dataclass
class _Shared:
    """Per-process caches shared by every actor view of one vault."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


class ServiceContext:
    def __init__(self, settings: Settings, *, actor: str | None = None, create: bool = False) -> None:
        self.settings = settings
        self.actor = actor or current_user()
        self.role: str | None = None
        self.request_id: str | None = None
        self.store = Store.for_settings(settings, create=create)  # SQLite, or the --db chosen at init
        self.keys: KeyRing = load_keyring(settings.key_path, create=create)
        # The audit chain's head outside the database, next to the keys (see audit/heads.py).
        self.audit_head = audit.ExternalHead(settings.audit_head_path, self.keys.audit_key)
        self._shared = _Shared()
        self.indexes = IndexManager(
            self.resolve_index_spec(),
            settings.index_dir,
            count_samples=self._count_samples,
            stored_vectors=self._stored_vectors,
            check_pinned=self._check_pinned,
        )
        ensure_registered(models_dir_setting(settings.home))  # installed packs and their calibration

    def as_actor(self, actor: str, role: str | None, request_id: str | None) -> ServiceContext:
        view = copy.copy(self)
        view.actor, view.role, view.request_id = actor, role, request_id
        return view

    # ---- transactions and the log ------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (serialised with every other writer of the vault). When it appended to the
        audit log, the head file outside the database is advanced after the commit: a process killed in
        between leaves the file behind the log, which verification accepts while the chain from the
        file's entry on is intact, and the next append brings it level again."""
        with self.store.begin() as conn:
            yield conn
            appended = audit.pending(conn)
        if appended is not None:
            faults.point("audit:committed")
            self.advance_audit_head(appended.head)

    def advance_audit_head(self, head: audit.Head) -> None:
        try:
            self.audit_head.advance(head)
        except OSError as exc:  # the entry is committed; the file catches up at the next append
            log.warning("could not write the audit head file %s: %s", self.audit_head.path, exc)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one snapshot, no writer's lock."""
        with self.store.read() as conn:
            yield conn

    def log(self, conn: Connection, event: AuditEvent) -> int:
        """Append ``event`` in the caller's (write) transaction; returns its sequence number."""
        fields = event.entry()
        if self.request_id:
            fields["details"] = {**fields["details"], "request_id": self.request_id}
        return audit.append(
            conn,
            event.action,
            key=self.keys.audit_key,
            external=self.audit_head,
            on_break=chain_break_event,
            actor=self.actor,
            role=self.role,
            **fields,
        )

    def check_audit_tail(self, conn: Connection, problem: str | None = None) -> audit.Pending:
        """The log's end in this write transaction, a ``chain_break`` entry recorded first if it is not
        where the heads say (or ``problem`` is given)."""
        return audit.check_tail(
            conn,
            self.keys.audit_key,
            self.audit_head,
            actor=self.actor,
            role=self.role,
            on_break=chain_break_event,
            problem=problem,
        )

    # ---- keys and templates -------------------------------------------------------------------------
    def current_key(self, conn: Connection | None = None) -> TemplateKey:
        """The template key new templates are protected with (its version is kept in the store)."""
        if conn is None:
            with self.read() as c:
                return self.current_key(c)
        version = self.store.get_meta(conn, "template_key_version")
        return self.keys.key(int(version or 1))

    @staticmethod
    def template_context(collection: Collection) -> bytes:
        """Associated data binding a stored template to its collection and model."""
        return f"sample:{collection['id']}:{collection['model_id']}".encode()

    def open_template(self, collection: Collection, blob: bytes, version: int) -> np.ndarray:
        """A stored template, decrypted (still in protected, rotated form)."""
        return self.keys.key(version).open(blob, self.template_context(collection), collection["dim"])

    def open_hits(self, collection: Collection, hits: dict[int, Any]) -> dict[int, Any]:
        for hit in hits.values():
            hit.vector = self.open_template(collection, hit.blob, hit.key_version)
        return hits

    # ---- collections ---------------------------------------------------------------------------------
    def still_pinned(self, conn: Connection, collection: Collection) -> Collection:
        """The collection as stored now, inside the caller's transaction; refused when it was deleted or
        moved to another model since ``collection`` was read (vectors already made would be of the old
        model)."""
        now = self.store.get_collection(conn, collection["name"])
        if any(now[k] != collection[k] for k in ("id", "model_id", "dim")):
            raise ConflictError(
                f"collection {collection['name']!r} moved to model {now['model_id']} while this request ran; "
                "nothing was stored, run it again",
                code="collection_changed",
            )
        return now

    def _check_pinned(self, collection: Collection) -> None:
        with self.read() as conn:
            self.still_pinned(conn, collection)

    def _count_samples(self, collection: Collection) -> int:
        with self.read() as conn:
            return self.store.count_samples(conn, collection["id"])

    def _stored_vectors(self, collection: Collection) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        with self.read() as conn:
            for rows in self.store.iter_sample_blobs(conn, collection["id"]):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                yield ids, np.stack([self.open_template(collection, r[2], r[3]) for r in rows])

    def resolve_index_spec(self) -> str:
        """The index backend is chosen at ``init`` and remembered in the store, so later commands can
        never silently open a different backend."""
        wanted = self.settings.index
        if not Store.exists_for(self.settings) or not self.store.is_initialised():
            return wanted or "faiss"
        with self.write() as conn:
            stored = self.store.get_meta(conn, "index")
            if stored is None:
                self.store.set_meta(conn, "index", wanted or "faiss")
                return wanted or "faiss"
        if wanted and wanted != stored:
            raise ConfigError(f"this vault uses the index backend {stored!r}, not {wanted!r}")
        return stored

    # ---- models, images, thresholds ------------------------------------------------------------------
    def pipeline(self, model_id: str, detector: str | None = None) -> Pipeline:
        """The pipeline of ``model_id`` (finding faces with ``detector``, else the setting's, else the
        pack's own), one per process, even under concurrent first use."""
        key = f"{model_id}\x00{detector or ''}"
        with self._shared.lock:
            pipe = self._shared.pipelines.get(key)
            if pipe is None:
                pipe = Pipeline.for_model(model_id, self.settings, detector)
                self._shared.pipelines[key] = pipe
            return pipe

    def collection_pipeline(self, coll: Collection) -> Pipeline:
        """The pipeline a collection's photos are analysed with: its model and its detector."""
        return self.pipeline(coll["model_id"], coll.get("detector"))

    def collection_settings(self, coll: Collection) -> Settings:
        """The settings worker processes analyse a collection's photos with (its detector in them)."""
        detector = coll.get("detector")
        return replace(self.settings, detector=detector) if detector else self.settings

    def decode(self, item: ImageInput) -> imaging.DecodedImage:
        """An image path or (name, bytes), decoded within the vault's size limits."""
        s = self.settings
        return imaging.decode_input(item, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)

    def threshold(
        self, model_id: str, fmr: float | None, threshold: float | None, default_fmr: float
    ) -> tuple[float, float]:
        """(similarity threshold, its false-match rate): a given ``threshold``, or the one for ``fmr``
        (``default_fmr`` when neither is given). Both at once is an input error."""
        cal = calibration.for_model(model_id)
        if threshold is not None:
            if fmr is not None:
                raise InputError("give a threshold or a false-match rate, not both", code="invalid_threshold")
            if not -1.0 <= threshold <= 1.0:
                raise ConfigError(f"threshold must be a similarity between -1 and 1, got {threshold}")
            return float(threshold), cal.fmr_at(threshold)
        target = default_fmr if fmr is None else fmr
        return cal.threshold_for(target), float(target)

    def strict_threshold(self, model_id: str, fmr: float | None = None) -> float:
        """The strict operating point (identity conflict, opt-out) of ``model_id``."""
        target = self.settings.conflict_fmr if fmr is None else fmr
        return self.threshold(model_id, target, None, target)[0]
