"""Embedded FAISS index whose kind follows the collection's size: exact (flat) while small, HNSW, then
IVF-PQ with OPQ whose codes stay in RAM while the full vectors stay on disk for exact re-ranking.
See policy.py for the thresholds and docs/INDEX.md for the measurements behind them.

Files of collection ``X`` (``path`` = ``X.faiss``):

- ``X.json``    header: model_id, dim, kind, count, params (what `facevault index info` shows).
- ``X.faiss``   the snapshot, replaced atomically on every save. Flat: a plain FAISS file (the format
                facevault always wrote, so old vaults load). HNSW / IVF-PQ: an uncompressed .npz holding
                the serialized FAISS index, the row -> sample id array and a meta JSON.
- ``X.g<N>.vectors``  IVF-PQ only: float32 rows, append-only, named by the snapshot that uses them.

Kind switches happen lazily, at the next ``save`` or ``search`` after the count crosses a threshold,
so a rebuild that adds millions of vectors in batches (``Vault._rebuild``) builds the final kind once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, IntegrityError, ModelMismatchError
from .base import VectorIndex
from .faiss_kinds import FlatEngine, HnswEngine, IvfPqEngine, faiss_module
from .policy import IndexPolicy, nprobe_for
from .storage import RowFile, atomic_write, is_container, read_container, write_container

log = logging.getLogger("facevault.index")

# Below this many vectors x queries a search runs on one OpenMP thread: a 50-face gallery took 8-14 ms per
# query on a busy two-core machine waking the pool, against well under 1 ms on one thread.
SMALL_SEARCH = 200_000

FORMAT = 2
Engine = FlatEngine | HnswEngine | IvfPqEngine


class FaissIndex(VectorIndex):
    def __init__(
        self,
        path: Path,
        dim: int,
        model_id: str,
        *,
        policy: IndexPolicy | None = None,
        **settings: Any,
    ) -> None:
        """``policy``/``settings`` pin index settings for this instance (else: header-saved tuning,
        then FACEVAULT_INDEX_* environment variables, then defaults)."""
        self.path = Path(path)
        self.header_path = self.path.with_suffix(".json")
        self.dim = int(dim)
        self.model_id = model_id
        self._pinned = (policy or IndexPolicy()).with_values(**settings) if policy or settings else None
        self._tuned: dict[str, Any] = {}
        self.policy = self._effective_policy()
        self._generation = 0
        self._engine: Engine = FlatEngine(self.dim)
        if self.path.exists():
            self._load()

    # ---- settings ------------------------------------------------------------------------------------
    def _effective_policy(self) -> IndexPolicy:
        if self._pinned is not None:
            return self._pinned.with_values(**self._tuned)
        return IndexPolicy.from_env(IndexPolicy().with_values(**self._tuned))

    def tune(self, **values: Any) -> dict[str, Any]:
        """Change settings (e.g. ``nprobe=64``, ``ef_search=128``, ``rerank=16``, ``ivfpq_at=2_000_000``,
        ``kind="hnsw"``); they are saved with the index and take effect now (a threshold change may
        switch the kind at the next save or search). Returns the effective settings."""
        self.policy.with_values(**values)  # validate first
        self._tuned.update({k: v for k, v in values.items() if v is not None})
        self.policy = self._effective_policy()
        return self.policy.to_dict()

    @property
    def kind(self) -> str:
        return self._engine.kind

    # ---- load / save ---------------------------------------------------------------------------------
    def _check_model(self, model_id: Any, dim: Any, where: Path) -> None:
        if model_id is not None and (model_id != self.model_id or int(dim) != self.dim):
            raise ModelMismatchError(
                f"index {where} holds {model_id}/{dim}-d vectors, "
                f"collection expects {self.model_id}/{self.dim}-d"
            )

    def _load(self) -> None:
        faiss = faiss_module()
        if self.header_path.exists():
            try:
                header = json.loads(self.header_path.read_text(encoding="utf-8"))
            except ValueError:
                header = {}
            self._check_model(header.get("model_id"), header.get("dim", -1), self.header_path)
        try:
            if is_container(self.path):
                meta, arrays = read_container(self.path)
                index = faiss.deserialize_index(arrays["faiss"])
            else:
                meta, arrays = {"kind": "flat"}, {}
                index = faiss.read_index(str(self.path))
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise IntegrityError(
                f"index file {self.path} is unreadable ({exc}); run doctor --repair"
            ) from exc
        self._check_model(meta.get("model_id"), meta.get("dim", -1), self.path)
        if index.d != self.dim:
            raise ModelMismatchError(f"index {self.path} has dimension {index.d}, expected {self.dim}")
        self._tuned = dict(meta.get("tuned", {}))
        self.policy = self._effective_policy()
        self._generation = int(meta.get("generation", 0))
        kind = meta.get("kind", "flat")
        if kind == "flat":
            self._engine = FlatEngine(self.dim, index)
        elif kind == "hnsw":
            self._engine = HnswEngine(self.dim, self.policy, index, arrays["rows"])
        elif kind == "ivfpq":
            vec_path = self.path.parent / meta["vectors"]
            rows = arrays["rows"]
            if not vec_path.exists() or vec_path.stat().st_size < len(rows) * 4 * self.dim:
                raise IntegrityError(f"vector file {vec_path} is missing or short; run doctor --repair")
            vectors = RowFile(vec_path, self.dim, len(rows))
            self._engine = IvfPqEngine(self.dim, index, rows, vectors, int(meta.get("trained_on", 0)))
        else:
            raise IntegrityError(f"index {self.path} has unknown kind {kind!r}")

    def save(self) -> None:
        """Persist atomically: the snapshot is written to a temp file and renamed over the old one (a
        crash leaves the previous or the new snapshot); the IVF-PQ vector rows it names are fsynced
        first, and rows appended after the last snapshot are simply ignored on load."""
        self._maybe_switch()
        faiss = faiss_module()
        eng = self._engine
        meta: dict[str, Any] = {
            "format": FORMAT,
            "model_id": self.model_id,
            "dim": self.dim,
            "kind": eng.kind,
            "count": len(eng),
            "generation": self._generation,
            "tuned": self._tuned,
        }
        if isinstance(eng, FlatEngine):
            atomic_write(self.path, faiss.serialize_index(eng.index).tobytes())
        else:
            arrays = {"faiss": faiss.serialize_index(eng.index), "rows": eng.rows.view}
            if isinstance(eng, IvfPqEngine):
                eng.vectors.flush()
                meta["vectors"] = eng.vectors.path.name
                meta["trained_on"] = eng.trained_on
            write_container(self.path, meta, arrays)
        header = {**meta, "params": eng.params(), "ram_bytes": eng.ram_bytes()}
        atomic_write(self.header_path, json.dumps(header, indent=1).encode())
        self._drop_stale_vector_files()

    def _vector_path(self, generation: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.g{generation}.vectors")

    def _vector_files(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.stem}.g*.vectors"))

    def _drop_stale_vector_files(self) -> None:
        keep = self._engine.vectors.path if isinstance(self._engine, IvfPqEngine) else None
        for f in self._vector_files():
            if f != keep:
                f.unlink(missing_ok=True)

    # ---- the interface ------------------------------------------------------------------------------
    def _clean(self, ids: np.ndarray, vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if vectors is None:
            return ids, np.zeros((0, self.dim), np.float32)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.size % self.dim or (vectors.ndim > 1 and vectors.shape[-1] != self.dim):
            raise ModelMismatchError(f"vectors of shape {vectors.shape} given to a {self.dim}-d index")
        vectors = np.ascontiguousarray(vectors.reshape(-1, self.dim))
        if len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        return ids, vectors

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._clean(ids, vectors)
        if len(ids):
            self._engine.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids, _ = self._clean(ids)
        if not len(ids):
            return 0
        removed = self._engine.remove(ids)
        if isinstance(self._engine, HnswEngine) and self._engine.needs_compaction(self.policy):
            self._rebuild_as(self.policy.kind_for(len(self._engine), None), why="compaction")
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.size % self.dim or (queries.ndim > 1 and queries.shape[-1] != self.dim):
            raise ModelMismatchError(f"queries of shape {queries.shape} given to a {self.dim}-d index")
        queries = np.ascontiguousarray(queries.reshape(-1, self.dim))
        k = max(int(k), 0)
        if k == 0 or len(self._engine) == 0:
            n = queries.shape[0]
            return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        self._maybe_switch()
        if len(self._engine) * queries.shape[0] >= SMALL_SEARCH:
            return self._engine.search(queries, k, self.policy)
        faiss = faiss_module()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # waking OpenMP's pool costs more than a small search itself
        try:
            return self._engine.search(queries, k, self.policy)
        finally:
            faiss.omp_set_num_threads(threads)

    def ids(self) -> np.ndarray:
        return self._engine.ids()

    def __len__(self) -> int:
        return len(self._engine)

    def reset(self) -> None:
        self._close_engine()
        self._engine = FlatEngine(self.dim)

    def destroy(self) -> None:
        self.reset()
        self.path.unlink(missing_ok=True)
        self.header_path.unlink(missing_ok=True)
        for f in self._vector_files():
            f.unlink(missing_ok=True)

    # ---- kinds ---------------------------------------------------------------------------------------
    def _maybe_switch(self) -> None:
        eng = self._engine
        want = self.policy.kind_for(len(eng), eng.kind)
        if want != eng.kind:
            self._rebuild_as(want, why=f"{len(eng)} vectors")
        elif (
            isinstance(eng, IvfPqEngine)
            and self.policy.retrain_growth > 0
            and len(eng) > self.policy.retrain_growth * max(eng.trained_on, 1)
        ):
            self._rebuild_as("ivfpq", why=f"grew {len(eng) / max(eng.trained_on, 1):.1f}x since training")

    def rebuild(self, kind: str | None = None) -> dict[str, Any]:
        """Rebuild now (retrains IVF-PQ, compacts HNSW); ``kind`` forces one. Returns ``info()``."""
        if kind is not None and kind not in ("flat", "hnsw", "ivfpq"):
            raise ConfigError(f"unknown index kind {kind!r}")
        self._rebuild_as(kind or self.policy.kind_for(len(self._engine), None), why="requested")
        return self.info()

    def bulk_load(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
        """Replace the contents with ``batches`` of (ids, vectors), building the final kind once."""
        self.reset()
        for ids, vecs in batches:
            self.add(ids, vecs)
        self._maybe_switch()
        return len(self)

    def load_arrays(self, ids: np.ndarray, vectors: np.ndarray, chunk: int = 262_144) -> int:
        """Replace the contents with ``vectors`` (an array or a memmap) keyed by ``ids``, building the
        kind their count calls for directly (no flat copy in between)."""
        ids, n = np.asarray(ids, dtype=np.int64).reshape(-1), len(vectors)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} vectors")
        kind = self.policy.kind_for(n, None)
        self.reset()
        if kind != "ivfpq":
            engine: Engine = FlatEngine(self.dim) if kind == "flat" else HnswEngine(self.dim, self.policy)
            for start in range(0, n, chunk):
                engine.add(*self._clean(ids[start : start + chunk], vectors[start : start + chunk]))
            self._engine = engine
            return n
        rng = np.random.default_rng(12345)
        take = np.sort(rng.choice(n, size=min(n, self.policy.max_train), replace=False))
        sample = np.ascontiguousarray(vectors[take], dtype=np.float32)
        batches = (self._clean(ids[s : s + chunk], vectors[s : s + chunk]) for s in range(0, n, chunk))
        self._generation += 1
        self._engine = IvfPqEngine.build(
            self.dim, self.policy, batches, self._vector_path(self._generation), n, sample
        )
        return n

    def _rebuild_as(self, kind: str, why: str) -> None:
        t0 = time.perf_counter()
        old = self._engine
        n = len(old)
        if kind == "ivfpq" and n < self.policy.min_ivfpq_train:
            raise ConfigError(f"IVF-PQ needs at least {self.policy.min_ivfpq_train} vectors, have {n}")
        if kind == "flat":
            new: Engine = FlatEngine(self.dim)
            for ids, vecs in old.live():
                new.add(ids, vecs)
        elif kind == "hnsw":
            new = HnswEngine(self.dim, self.policy)
            for ids, vecs in old.live():
                new.add(ids, vecs)
        else:
            sample = self._training_sample(old, n)
            self._generation += 1
            new = IvfPqEngine.build(
                self.dim, self.policy, old.live(), self._vector_path(self._generation), n, sample
            )
        self._close_engine(keep=new)
        self._engine = new
        log.info(
            "index %s: %s -> %s (%s), %.1f s", self.path.name, old.kind, kind, why, time.perf_counter() - t0
        )

    def _training_sample(self, engine: Engine, n: int) -> np.ndarray:
        """A uniform random subset of the live vectors (at most ``max_train``), read in one pass."""
        want = min(n, self.policy.max_train)
        rng = np.random.default_rng(12345)
        take = np.sort(rng.choice(n, size=want, replace=False)) if want < n else None
        out: list[np.ndarray] = []
        seen = 0
        for _, vecs in engine.live():
            if take is None:
                out.append(vecs)
            else:
                lo, hi = np.searchsorted(take, [seen, seen + len(vecs)])
                out.append(vecs[take[lo:hi] - seen])
            seen += len(vecs)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _close_engine(self, keep: Engine | None = None) -> None:
        old = self._engine
        if isinstance(old, IvfPqEngine) and not (
            isinstance(keep, IvfPqEngine) and keep.vectors is old.vectors
        ):
            old.vectors.close()

    def stamp(self) -> object:
        """Identity of the snapshot file, -1 when there is none: changes on every save, here or elsewhere.
        Not the mtime alone: two saves within one tick of the filesystem clock (milliseconds on some)
        share an mtime, and a process would keep searching, then extend and save, a stale copy. Every
        save renames a new file into place, so its inode changes too."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return -1
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # ---- introspection -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Kind, count, RAM estimate (bytes the index structures hold in memory; IVF-PQ's on-disk rows
        are page cache, not counted) and the settings in force."""
        eng = self._engine
        ram = eng.ram_bytes()
        params = eng.params()
        if isinstance(eng, IvfPqEngine):
            params["nprobe"] = nprobe_for(params["nlist"], self.policy.nprobe)
        return {
            "kind": eng.kind,
            "count": len(eng),
            "dim": self.dim,
            "model_id": self.model_id,
            "ram_bytes": ram,
            "ram_bytes_per_vector": round(ram / len(eng), 1) if len(eng) else None,
            "params": params,
            "policy": self.policy.to_dict(),
            "path": str(self.path),
        }

    def iter_vectors(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every live entry, in chunks."""
        yield from self._engine.live()
