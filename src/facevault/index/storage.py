"""Files of the embedded index: atomic whole-file writes, the snapshot container, and the append-only
row file that holds full float32 vectors on disk for exact re-ranking."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: Path, write: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write a whole file so a crash leaves the old or the new one: temp file, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, bytes | bytearray | memoryview):
                fh.write(write)
            else:
                write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_container(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def write_container(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """One snapshot file: a JSON ``meta`` plus named arrays (an uncompressed .npz), written atomically."""

    def write(fh: IO[bytes]) -> None:
        payload = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
        np.savez(fh, **payload)  # type: ignore[arg-type]

    atomic_write(path, write)


def read_container(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"unreadable index snapshot: {exc}") from exc
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    return meta, arrays


def read_container_meta(path: Path) -> dict[str, Any]:
    """The JSON ``meta`` of a snapshot file alone, without reading its arrays (a freshness check)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("meta.npy") as fh:
            raw = np.lib.format.read_array(fh, allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"unreadable index snapshot: {exc}") from exc
    return dict(json.loads(raw.tobytes().decode()))


class RowFile:
    """Full vectors, one float32 row per index row, appended and never moved. Deleted rows are zeroed
    in place (an erased face must not linger on disk). Rows past the committed count (a crash after an
    append, before the snapshot naming them) are ignored and later overwritten."""

    def __init__(self, path: Path, dim: int, rows: int = 0) -> None:
        self.path = Path(path)
        self.dim = dim
        self.rows = rows
        self.row_bytes = 4 * dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._map: np.memmap | None = None
        self._dirty = False

    def append(self, vectors: np.ndarray) -> int:
        """Write rows at the end; returns the first new row number."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        start = self.rows
        view = memoryview(vectors).cast("B")
        offset = start * self.row_bytes
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written : written + (1 << 30)], offset + written)
        self.rows += len(vectors)
        self._dirty = True
        return start

    def zero(self, rows: np.ndarray) -> None:
        blank = bytes(self.row_bytes)
        for r in np.asarray(rows, dtype=np.int64):
            if 0 <= r < self.rows:
                os.pwrite(self._fd, blank, int(r) * self.row_bytes)
        self._dirty = True

    def _view(self) -> np.ndarray:
        if self.rows == 0:
            return np.zeros((0, self.dim), np.float32)
        if self._map is None or self._map.shape[0] < self.rows:
            self._map = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        return self._map[: self.rows]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the given order (read sorted, for locality)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.dim), np.float32)
        out[order] = self._view()[rows[order]]
        return out

    def chunks(self, size: int = 262_144) -> Any:
        """(first_row, block) over all committed rows, for rebuilds."""
        view = self._view()
        for start in range(0, self.rows, size):
            yield start, np.array(view[start : start + size])

    def flush(self) -> None:
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def close(self) -> None:
        self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def disk_bytes(self) -> int:
        return self.rows * self.row_bytes

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
