"""The three kinds of the embedded FAISS index. Each engine keeps its own id bookkeeping; FaissIndex
(faiss_index.py) picks the kind, moves vectors between kinds and persists them.

All engines answer inner-product searches over unit vectors with exact scores: flat and HNSW score the
stored float32 vectors; IVF-PQ re-ranks a PQ shortlist with the float32 rows kept on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .policy import IndexPolicy, nlist_for, nprobe_for, pq_m_for
from .storage import RowFile


def faiss_module():  # type: ignore[no-untyped-def]
    """faiss, imported on first use (no heavy import at facevault import time)."""
    import faiss

    return faiss


def empty_result(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)


def pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen (n, k') results to (n, k) with -1 ids."""
    n, have = ids.shape
    if have >= k:
        return scores[:, :k], ids[:, :k]
    s, i = empty_result(n, k)
    s[:, :have], i[:, :have] = scores, ids
    return s, i


class _Rows:
    """A growable int64 array: index row -> external id (-1 once deleted)."""

    def __init__(self, data: np.ndarray | None = None) -> None:
        data = np.zeros(0, np.int64) if data is None else np.asarray(data, np.int64)
        self._buf = data.copy()
        self.n = len(data)

    def append(self, ids: np.ndarray) -> None:
        need = self.n + len(ids)
        if need > len(self._buf):
            grown = np.empty(max(need, int(len(self._buf) * 1.5) + 1024), np.int64)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown
        self._buf[self.n : need] = ids
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Rows holding any of ``ids`` (a scan: O(rows), ~10 ms per million; removals are rare)."""
        v = self.view
        return np.flatnonzero(np.isin(v, ids) & (v >= 0))


class FlatEngine:
    """Exact search: IndexIDMap2 over IndexFlatIP (the format facevault has always written)."""

    kind = "flat"

    def __init__(self, dim: int, index: Any = None) -> None:
        faiss = faiss_module()
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        return int(self.index.remove_ids(faiss_module().IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int, policy: IndexPolicy) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0:
            return empty_result(len(queries), k)
        return pad(*self.index.search(queries, min(k, n)), k)

    def ids(self) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, np.int64)
        return faiss_module().vector_to_array(self.index.id_map).astype(np.int64)

    def live(self, chunk: int = 262_144) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self)
        if n == 0:
            return
        flat = faiss_module().downcast_index(self.index.index)
        ids = self.ids()
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            yield ids[start:stop], flat.reconstruct_n(start, stop - start)

    def ram_bytes(self) -> int:
        # vectors + id_map + rev_map (an unordered_map, ~40 bytes per entry)
        return len(self) * (4 * self.dim + 8 + 40)

    def params(self) -> dict[str, Any]:
        return {}


class HnswEngine:
    """faiss IndexHNSWFlat (inner product). HNSW in faiss cannot remove nodes, so a removed face is
    marked deleted (row id -1), its stored vector is zeroed (erasure), and searches skip it with an
    IDSelectorBitmap; once deleted rows exceed ``compact_ratio`` the owner rebuilds the graph from the
    live rows (``needs_compaction``)."""

    kind = "hnsw"

    def __init__(self, dim: int, policy: IndexPolicy, index: Any = None, rows: np.ndarray | None = None):
        faiss = faiss_module()
        self.dim = dim
        if index is None:
            index = faiss.IndexHNSWFlat(dim, policy.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = policy.ef_construction
        self.index = index
        self.rows = _Rows(rows)
        self.deleted = int((self.rows.view < 0).sum())
        self._bitmap: np.ndarray | None = None

    def __len__(self) -> int:
        return self.rows.n - self.deleted

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add(vectors)
        self.rows.append(ids)
        self._bitmap = None

    def _xb(self) -> np.ndarray:
        faiss = faiss_module()
        storage = faiss.downcast_index(self.index.storage)
        n = int(storage.ntotal)
        return faiss.rev_swig_ptr(storage.get_xb(), n * self.dim).reshape(n, self.dim)

    def remove(self, ids: np.ndarray) -> int:
        rows = self.rows.find(ids)
        if len(rows):
            self.rows.view[rows] = -1
            self._xb()[rows] = 0.0
            self.deleted += len(rows)
            self._bitmap = None
        return len(rows)

    def needs_compaction(self, policy: IndexPolicy) -> bool:
        return self.deleted > 0 and self.deleted > policy.compact_ratio * max(self.rows.n, 1)

    def search(self, queries: np.ndarray, k: int, policy: IndexPolicy) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        if len(self) == 0:
            return empty_result(len(queries), k)
        kk = min(k, len(self))
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(policy.ef_search, kk)
        sel = None
        if self.deleted:
            if self._bitmap is None:
                self._bitmap = np.packbits(self.rows.view >= 0, bitorder="little")
            sel = faiss.IDSelectorBitmap(self.rows.n, faiss.swig_ptr(self._bitmap))
            params.sel = sel
        scores, rows = self.index.search(queries, kk, params=params)
        ids = np.where(rows >= 0, self.rows.view[np.maximum(rows, 0)], -1)
        scores = np.where(ids >= 0, scores, 0.0).astype(np.float32)
        return pad(scores, ids, k)

    def ids(self) -> np.ndarray:
        v = self.rows.view
        return v[v >= 0].copy()

    def live(self, chunk: int = 262_144) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        xb, v = self._xb(), self.rows.view
        for start in range(0, self.rows.n, chunk):
            ids = v[start : start + chunk]
            keep = ids >= 0
            yield ids[keep], np.array(xb[start : start + chunk][keep])

    def ram_bytes(self) -> int:
        # float32 vector + level-0 links (2*M int32) + upper levels (~1/M of that) + row id
        m = int(self.index.hnsw.nb_neighbors(0)) // 2 if self.rows.n else 0
        return self.rows.n * (4 * self.dim + int(8 * m * 1.07) + 8 + 4)

    def params(self) -> dict[str, Any]:
        return {
            "M": int(self.index.hnsw.nb_neighbors(0)) // 2,
            "efConstruction": int(self.index.hnsw.efConstruction),
            "deleted": self.deleted,
        }


class IvfPqEngine:
    """OPQ -> IVF -> PQ codes in RAM (pq_m bytes + an 8-byte list entry per face); full vectors in a
    RowFile. Index ids are row numbers; ``rows`` maps row -> external id. Removal uses IVF remove_ids
    (incremental) and zeroes the row on disk."""

    kind = "ivfpq"

    def __init__(self, dim: int, index: Any, rows: np.ndarray, vectors: RowFile, trained_on: int):
        self.dim = dim
        self.index = index
        self.rows = _Rows(rows)
        self.vectors = vectors
        self.trained_on = trained_on
        self.deleted = int((self.rows.view < 0).sum())

    @classmethod
    def build(
        cls,
        dim: int,
        policy: IndexPolicy,
        batches: Iterator[tuple[np.ndarray, np.ndarray]],
        vector_path: Path,
        n_hint: int,
        sample: np.ndarray,
    ) -> IvfPqEngine:
        """Train on ``sample`` (a random subset of the vectors), then stream ``batches`` in."""
        faiss = faiss_module()
        nlist = policy.nlist or nlist_for(n_hint)
        m = policy.pq_m or pq_m_for(dim, policy.pq_nbits)
        d_out = -(-dim // m) * m
        # L2 for the IVF-PQ stage: on unit vectors it ranks exactly like inner product, plain k-means
        # gives balanced lists (IP k-means over these off-centre embeddings does not), and the
        # shortlist is re-scored by exact inner product anyway.
        # 4-bit "fast scan" PQ: SIMD table lookups scan ~5x faster than 8-bit PQ per code
        codec = f"PQ{m}x4fs" if policy.pq_nbits == 4 else f"PQ{m}x{policy.pq_nbits}"
        index = faiss.index_factory(dim, f"OPQ{m}_{d_out},IVF{nlist},{codec}", faiss.METRIC_L2)
        opq = faiss.downcast_VectorTransform(index.chain.at(0))
        opq.niter = policy.opq_iter
        opq.max_train_points = min(len(sample), 65_536)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.max_points_per_centroid = 64
        ivf.cp.niter = 12
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        if hasattr(ivf, "use_precomputed_table"):
            # the precomputed L2 table costs nlist*M*2^nbits*4 bytes (268 MB at 8192 lists, PQ32x8)
            ivf.use_precomputed_table = -1
        vector_path.unlink(missing_ok=True)
        engine = cls(dim, index, np.zeros(0, np.int64), RowFile(vector_path, dim), len(sample))
        engine.trained_on = n_hint
        for ids, vecs in batches:
            engine.add(ids, vecs)
        return engine

    @property
    def ivf(self) -> Any:
        faiss = faiss_module()
        return faiss.downcast_index(faiss.extract_index_ivf(self.index))

    def __len__(self) -> int:
        return self.rows.n - self.deleted

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        start = self.vectors.append(vectors)
        assert start == self.rows.n, "row file and row ids out of step"
        rows = np.arange(start, start + len(ids), dtype=np.int64)
        self.index.add_with_ids(vectors, rows)
        self.rows.append(ids)

    def remove(self, ids: np.ndarray) -> int:
        rows = self.rows.find(ids)
        if len(rows):
            self.index.remove_ids(faiss_module().IDSelectorBatch(rows))
            self.rows.view[rows] = -1
            self.vectors.zero(rows)
            self.deleted += len(rows)
        return len(rows)

    def search(self, queries: np.ndarray, k: int, policy: IndexPolicy) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        nq = len(queries)
        if len(self) == 0:
            return empty_result(nq, k)
        short = min(max(policy.rerank * k, policy.min_shortlist), len(self))
        ivf = self.ivf
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe_for(ivf.nlist, policy.nprobe)
        # few queries: spread one query's lists over the threads; many: one query per thread
        ivf.parallel_mode = 1 if nq < faiss.omp_get_max_threads() else 0
        _, rows = self.index.search(queries, short, params=params)
        # exact re-rank: one sorted read of every candidate row for the whole batch
        flat = rows.reshape(-1)
        valid = flat >= 0
        uniq, inverse = np.unique(flat[valid], return_inverse=True)
        vecs = self.vectors.gather(uniq)
        scores = np.full(flat.shape, -np.inf, np.float32)
        cand = vecs[inverse]
        owner = np.repeat(np.arange(nq), short)[valid]
        scores[valid] = np.einsum("ij,ij->i", cand, queries[owner])
        scores = scores.reshape(nq, short)
        kk = min(k, short)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        best_rows = np.take_along_axis(rows, top, axis=1)
        best = np.take_along_axis(scores, top, axis=1)
        ok = (best_rows >= 0) & np.isfinite(best)
        ids = np.where(ok, self.rows.view[np.maximum(best_rows, 0)], -1)
        return pad(np.where(ok, best, 0.0).astype(np.float32), ids, k)

    def ids(self) -> np.ndarray:
        v = self.rows.view
        return v[v >= 0].copy()

    def live(self, chunk: int = 262_144) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        v = self.rows.view
        for start, block in self.vectors.chunks(chunk):
            ids = v[start : start + len(block)]
            keep = ids >= 0
            yield ids[keep], block[keep]

    def ram_bytes(self) -> int:
        ivf = self.ivf
        codes = len(self) * (int(ivf.code_size) + 8)  # fast-scan packs in blocks of 32: about the same
        quantizer = int(ivf.nlist) * int(ivf.d) * 4
        pq = int(ivf.pq.M) * int(ivf.pq.ksub) * int(ivf.pq.dsub) * 4
        opq = self.dim * int(ivf.d) * 4
        return codes + quantizer + pq + opq + self.rows.n * 8

    def params(self) -> dict[str, Any]:
        ivf = self.ivf
        return {
            "nlist": int(ivf.nlist),
            "pq_m": int(ivf.pq.M),
            "pq_nbits": int(ivf.pq.nbits),
            "fast_scan": "FastScan" in type(ivf).__name__,
            "opq": True,
            "trained_on": self.trained_on,
            "deleted_rows": self.deleted,
            "vectors_file": self.vectors.path.name,
            "vectors_file_bytes": self.vectors.disk_bytes(),
        }
