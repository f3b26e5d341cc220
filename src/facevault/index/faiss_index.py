"""Embedded FAISS index: exact inner-product search (IndexIDMap2 over IndexFlatIP), one file per
collection, written atomically next to a small JSON header naming the model and dimension."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import IntegrityError, ModelMismatchError
from .base import VectorIndex


def _faiss():  # type: ignore[no-untyped-def]
    import faiss

    return faiss


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FaissIndex(VectorIndex):
    def __init__(self, path: Path, dim: int, model_id: str) -> None:
        self.path = Path(path)
        self.header_path = self.path.with_suffix(".json")
        self.dim = dim
        self.model_id = model_id
        faiss = _faiss()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        faiss = _faiss()
        if self.header_path.exists():
            header = json.loads(self.header_path.read_text(encoding="utf-8"))
            if header.get("model_id") != self.model_id or int(header.get("dim", -1)) != self.dim:
                raise ModelMismatchError(
                    f"index {self.path} holds {header.get('model_id')}/{header.get('dim')}-d vectors, "
                    f"collection expects {self.model_id}/{self.dim}-d"
                )
        try:
            index = faiss.read_index(str(self.path))
        except RuntimeError as exc:
            raise IntegrityError(
                f"index file {self.path} is unreadable ({exc}); run doctor --repair"
            ) from exc
        if index.d != self.dim:
            raise ModelMismatchError(f"index {self.path} has dimension {index.d}, expected {self.dim}")
        self._index = index

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(_faiss().IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self._index.ntotal == 0 or k <= 0:
            n = queries.shape[0]
            return np.zeros((n, max(k, 0)), np.float32), np.full((n, max(k, 0)), -1, np.int64)
        return self._index.search(queries, min(k, self._index.ntotal))

    def ids(self) -> np.ndarray:
        if self._index.ntotal == 0:
            return np.zeros(0, dtype=np.int64)
        return _faiss().vector_to_array(self._index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def save(self) -> None:
        faiss = _faiss()
        data = faiss.serialize_index(self._index).tobytes()
        header = {"model_id": self.model_id, "dim": self.dim, "count": len(self), "kind": "flat-ip"}
        _atomic_write(self.header_path, json.dumps(header).encode())
        _atomic_write(self.path, data)

    def reset(self) -> None:
        faiss = _faiss()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def destroy(self) -> None:
        self.reset()
        self.path.unlink(missing_ok=True)
        self.header_path.unlink(missing_ok=True)
