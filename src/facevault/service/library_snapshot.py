"""A library's face vectors and their FAISS index on disk, so a new process does not rebuild them.

Why: every ``library add`` places its new faces with a k-nearest-neighbour search over every face of the
library, and every ``library search`` searches them. A long-running server keeps them in memory
(``library_cluster.LibraryVectors``); a CLI command is a new process, and rebuilding the vectors and
the index of a 1M-face library from the store (open 1M sealed templates, build an HNSW graph) takes
minutes. The snapshot (``<home>/index/libraries/<library id>.npz``) holds the face ids, the FAISS index
(the protected vectors inside it) and the template key version, written after a ``library add``
committed.

It is a cache, never the truth: it is used only when its face ids are exactly the first faces of the
library as the store holds them now and its key version is the current one; anything else (an erasure,
a key rotation, a crash) makes it stale, and a stale snapshot is deleted, not used. Because it holds
protected templates, whatever deletes faces deletes it (``drop``), and every vault open deletes the
stale ones (``sweep``): an erasure that a crash cut short between its commit and ``drop`` leaves no
erased vector on disk past the next open.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..index.storage import read_container, write_container
from .context import ServiceContext

log = logging.getLogger(__name__)
SNAPSHOT = re.compile(r"(\d+)\.npz")


def folder(ctx: ServiceContext) -> Path:
    return Path(ctx.settings.index_dir) / "libraries"


def path_of(ctx: ServiceContext, library_id: int) -> Path:
    return folder(ctx) / f"{int(library_id)}.npz"


def save(ctx: ServiceContext, library: dict[str, Any], ids: np.ndarray, index: Any, key_version: int) -> bool:
    """Write the snapshot of ``library`` (committed faces only: call after the commit). Libraries under
    ``library_snapshot_faces`` get none (rebuilt from the store in about a second). Returns whether a file
    was written."""
    import faiss

    if len(ids) < max(1, ctx.settings.library_snapshot_faces) or index is None:
        return False
    meta = {
        "library_id": int(library["id"]),
        "model_id": library["model_id"],
        "dim": int(library["dim"]),
        "key_version": int(key_version),
        "faces": len(ids),
        "last_id": int(ids[-1]),
    }
    data = faiss.serialize_index(index)
    write_container(path_of(ctx, library["id"]), meta, {"ids": np.asarray(ids, np.int64), "index": data})
    return True


def load(
    ctx: ServiceContext, library: dict[str, Any], store_ids: np.ndarray, key_version: int
) -> tuple[np.ndarray, Any, np.ndarray] | None:
    """(ids, FAISS index, vectors) from the snapshot when it is a prefix of ``store_ids`` (every face id
    of the library now, in order) under ``key_version``; None, and the file deleted, when it is stale."""
    import faiss

    path = path_of(ctx, library["id"])
    if not path.is_file():
        return None
    try:
        meta, arrays = read_container(path)
        ids = arrays["ids"]
        fresh = (
            meta.get("key_version") == key_version
            and meta.get("model_id") == library["model_id"]
            and meta.get("dim") == int(library["dim"])
            and len(ids) <= len(store_ids)
            and bool(np.array_equal(ids, store_ids[: len(ids)]))
        )
        if not fresh:
            drop(ctx, library["id"])
            return None
        index = faiss.deserialize_index(arrays["index"])
        if index.ntotal != len(ids):
            drop(ctx, library["id"])
            return None
        vectors = index.reconstruct_n(0, index.ntotal)
    except (ValueError, KeyError, RuntimeError) as exc:
        log.warning("library snapshot %s unusable, removed: %s", path.name, exc)
        drop(ctx, library["id"])
        return None
    return ids, index, np.ascontiguousarray(vectors, dtype=np.float32)


def drop(ctx: ServiceContext, library_id: int) -> None:
    path_of(ctx, library_id).unlink(missing_ok=True)


def sweep(ctx: ServiceContext) -> int:
    """Delete every snapshot that no longer matches the store (faces deleted since, another key version,
    a deleted library, a temporary file of a killed write). Cheap: one count per snapshot, reading only
    its metadata. Returns how many were deleted."""
    where = folder(ctx)
    if not where.is_dir():
        return 0
    removed = 0
    with ctx.read() as conn:
        current = ctx.current_key(conn).version
        for path in sorted(where.iterdir()):
            m = SNAPSHOT.fullmatch(path.name)
            stale = m is None
            if m is not None:
                try:
                    meta, _ = _meta(path)
                except ValueError:
                    stale = True
                else:
                    count = ctx.store.library_faces_upto(conn, int(m.group(1)), int(meta["last_id"]))
                    stale = count != meta["faces"] or meta["key_version"] != current
            if stale:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _meta(path: Path) -> tuple[dict[str, Any], None]:
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z, z.open("meta.npy") as fh:
            raw = np.lib.format.read_array(fh, allow_pickle=False)
        return json.loads(raw.tobytes().decode()), None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise ValueError(str(exc)) from exc
