"""The lifecycle of a vault's vector indexes: one cached index per collection per process, the
cross-process lock that makes "store commit, then index write" one step for other processes, staleness
by count, rebuild from the store, and applying committed changes.

The index never reads the store itself: the service hands it two callables (how many samples the store
holds for a collection, and the store's vectors in pages), so the rule "only the service touches store
and index together" holds here too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import IntegrityError, ModelMismatchError
from . import discard_index, open_index
from .base import VectorIndex

log = logging.getLogger("facevault")


class IndexedCollection(Protocol):
    """What the manager needs to know of a collection (a store row)."""

    def __getitem__(self, key: str) -> Any: ...


# The store's sample count of a collection; the store's (ids, vectors) of a collection, page by page.
CountSamples = Callable[[Any], int]
StoredVectors = Callable[[Any], Iterable[tuple[np.ndarray, np.ndarray]]]
# Called when an index file holds another model's vectors: raises if the caller's view of the collection
# is stale (the collection moved meanwhile), returns when the store agrees with the caller.
CheckPinned = Callable[[Any], None]


@dataclass
class _Loaded:
    index: VectorIndex
    stamp: object  # the index's own change marker when we loaded it (file mtime, Milvus count...)


class IndexManager:
    """Per-process owner of the loaded indexes of one vault (shared by every actor view)."""

    def __init__(
        self,
        spec: str,
        index_dir: Path,
        *,
        count_samples: CountSamples,
        stored_vectors: StoredVectors,
        check_pinned: CheckPinned,
    ) -> None:
        self.spec = spec
        self.index_dir = index_dir
        self._count = count_samples
        self._vectors = stored_vectors
        self._check_pinned = check_pinned
        self._loaded: dict[int, _Loaded] = {}
        # FAISS indexes are not safe for a search during an add; one lock per process orders them.
        self.lock = threading.RLock()
        self._flock_depth = 0

    # ---- files and locks ------------------------------------------------------------------------------
    def path(self, collection_id: int) -> Path:
        return self.index_dir / f"collection-{collection_id}.faiss"

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Exclusive across processes (flock), re-entrant within this process."""
        with self.lock:
            if self._flock_depth:
                self._flock_depth += 1
                try:
                    yield
                finally:
                    self._flock_depth -= 1
                return
            self.index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            with open(fd, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._flock_depth = 1
                try:
                    yield
                finally:
                    self._flock_depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _save(self, idx: VectorIndex) -> None:
        """Save under the lock, removing first what earlier saves that were killed left: every save runs
        under this lock, so a temporary file found while holding it is a dead writer's, and it holds
        protected templates that no row owns (``doctor`` reports one until a save has run)."""
        with self.exclusive():
            for tmp in self.index_dir.glob("*.tmp"):
                tmp.unlink(missing_ok=True)
            idx.save()

    @contextmanager
    def committing(self, collection: IndexedCollection) -> Iterator[IndexChange]:
        """Store commit and index update as one step for other processes: the caller commits its store
        transaction inside this block and records what changed on the yielded ``IndexChange``; on leaving
        the block the change is applied and saved. A process that sees the store ahead of the index waits
        for this lock instead of rebuilding (and double-adding). If the block raises, nothing is applied
        (the store transaction rolled back too, or the loader repairs by count)."""
        with self.exclusive():
            change = IndexChange()
            yield change
            self.apply(collection, change)

    # ---- loading --------------------------------------------------------------------------------------
    def open(self, collection: IndexedCollection) -> VectorIndex:
        """A fresh handle on the collection's index file (not cached)."""
        return open_index(self.spec, self.path(collection["id"]), collection["dim"], collection["model_id"])

    def _load(self, collection: IndexedCollection) -> _Loaded:
        """The collection's index, reloaded if another process rewrote its file since we read it."""
        cid = collection["id"]
        cached = self._loaded.get(cid)
        if cached is None or cached.index.stamp() != cached.stamp:
            try:
                idx = self.open(collection)
                stamp = idx.stamp()
            except ModelMismatchError as exc:
                # The index holds another model's vectors: left behind by a collection migration that
                # stopped between its store commit and its index rebuild. The store is the truth; a
                # caller whose view of the collection is the stale one is refused instead.
                self._check_pinned(collection)
                log.warning("%s; rebuilding from the store", exc)
                discard_index(self.spec, self.path(cid))
                idx, stamp = self.open(collection), -2
            except IntegrityError as exc:
                log.warning("%s; rebuilding from the store", exc)
                discard_index(self.spec, self.path(cid))
                idx, stamp = self.open(collection), -2
            cached = _Loaded(idx, stamp)
            self._loaded[cid] = cached
        return cached

    def get(self, collection: IndexedCollection, store_count: int | None = None) -> VectorIndex:
        """The collection's index, rebuilt from the store if it does not hold exactly the store's sample
        count (a crash between a store commit and the index write). ``store_count``: the count the caller
        has just read in its own transaction (saves one)."""
        with self.lock:
            cached = self._load(collection)
        if store_count is not None and store_count == len(cached.index):
            return cached.index
        if self._count(collection) == len(cached.index):
            return cached.index
        # Another process may be between its store commit and its index save: wait for the index lock
        # and look again before concluding that a rebuild is needed.
        with self.exclusive():
            cached = self._load(collection)
            self._ensure_complete(collection, cached)
        return cached.index

    def search(
        self, collection: IndexedCollection, vectors: np.ndarray, k: int, store_count: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest stored vectors (ids -1 where there are fewer)."""
        index = self.get(collection, store_count)
        with self.lock:
            return index.search(vectors, k)

    def size(self, collection: IndexedCollection) -> int:
        return len(self.get(collection))

    # ---- changes --------------------------------------------------------------------------------------
    def _ensure_complete(
        self, collection: IndexedCollection, cached: _Loaded, expected: int | None = None
    ) -> None:
        """Rebuild the index unless it holds the store's sample count (``expected``: counted by the caller
        inside the transaction it just committed, under the index lock)."""
        if expected is None:
            expected = self._count(collection)
        if len(cached.index) != expected:
            log.warning(
                "index of %r holds %d vectors, store %d: rebuilding",
                collection["name"],
                len(cached.index),
                expected,
            )
            self._fill(collection, cached.index)
            cached.stamp = cached.index.stamp()

    def _fill(self, collection: IndexedCollection, idx: VectorIndex) -> int:
        with self.exclusive():
            idx.reset()
            for ids, vecs in self._vectors(collection):
                idx.add(ids, vecs)
            self._save(idx)
        return len(idx)

    def apply(self, collection: IndexedCollection, change: IndexChange) -> None:
        """Apply a change the store has already committed, then save the index."""
        with self.exclusive():
            cached = self._load(collection)
            if change.removed:
                cached.index.remove(np.asarray(change.removed, dtype=np.int64))
            if change.added_ids:
                cached.index.add(np.asarray(change.added_ids, dtype=np.int64), np.stack(change.added_vectors))
            self._save(cached.index)
            cached.stamp = cached.index.stamp()
            self._ensure_complete(collection, cached, change.store_count)

    def rebuild(self, collection: IndexedCollection) -> int:
        """Rebuild from the store (the store is the truth); returns how many vectors it holds."""
        with self.exclusive():
            cached = self._load(collection)
            count = self._fill(collection, cached.index)
            cached.stamp = cached.index.stamp()
        return count

    def recreate(self, collection: IndexedCollection) -> int:
        """Throw the index file away and build a new one from the store (doctor --repair, migration)."""
        with self.exclusive():
            self.discard(collection["id"])
            cached = self._load(collection)
            count = self._fill(collection, cached.index)
            cached.stamp = cached.index.stamp()
        return count

    def tune(self, collection: IndexedCollection, **values: Any) -> dict[str, Any]:
        with self.exclusive():
            cached = self._load(collection)
            result = cached.index.tune(**values)
            self._save(cached.index)
            cached.stamp = cached.index.stamp()
        return result

    def info(self, collection: IndexedCollection) -> dict[str, Any]:
        index = self.get(collection)
        with self.lock:
            return dict(index.info())

    def discard(self, collection_id: int) -> None:
        """Delete a collection's index (its collection was deleted, or it is rebuilt from scratch)."""
        with self.exclusive():
            discard_index(self.spec, self.path(collection_id))
            self._loaded.pop(collection_id, None)

    def forget(self, collection_id: int) -> None:
        """Drop the cached handle (the next use reloads from the file)."""
        with self.lock:
            self._loaded.pop(collection_id, None)


@dataclass
class IndexChange:
    """What one committed store transaction changed in a collection's index."""

    added_ids: list[int] = field(default_factory=list)
    added_vectors: list[np.ndarray] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    store_count: int | None = None  # the collection's sample count read in that transaction

    def add(self, sample_id: int, vector: np.ndarray) -> None:
        self.added_ids.append(int(sample_id))
        self.added_vectors.append(vector)

    def remove(self, sample_ids: Sequence[int]) -> None:
        self.removed.extend(int(i) for i in sample_ids)
