"""The vector index interface. An index is disposable: it is derived from the store's samples and can
always be rebuilt from them (``facevault doctor --repair``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class VectorIndex(ABC):
    """Inner-product search over unit vectors, keyed by sample id."""

    dim: int
    model_id: str

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) arrays of shape (n, k); missing slots have id -1."""

    @abstractmethod
    def ids(self) -> np.ndarray: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self) -> None:
        """Persist atomically (a crash leaves the previous or the new file, never half of one)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every vector."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the index and its files."""

    # ---- optional, with defaults -------------------------------------------------------------------
    def stamp(self) -> object:
        """A value that changes whenever another process rewrote the persistent copy, so a cached
        instance knows to reopen; None when there is nothing to watch (a server-side index)."""
        return None

    def info(self) -> dict[str, Any]:
        """Kind, count and settings, for ``facevault index info``."""
        return {"kind": type(self).__name__, "count": len(self), "dim": self.dim, "model_id": self.model_id}

    def tune(self, **values: Any) -> dict[str, Any]:
        """Change search-time settings; returns the settings in force."""
        if any(v is not None for v in values.values()):
            raise NotImplementedError(f"{type(self).__name__} has no tunable settings")
        return {}
