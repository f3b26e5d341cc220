"""A library's face vectors and their FAISS index on disk, so a new process does not rebuild them.

Why: every ``library add`` places its new faces with a k-nearest-neighbour search over every face of the
library, and every ``library search`` searches them. A long-running server keeps them in memory
(``library_cluster.LibraryVectors``); a CLI command is a new process, and rebuilding the vectors and
the index of a 1M-face library from the store (open 1M sealed templates, build an HNSW graph) takes
minutes.

Two files per library under ``<home>/index/libraries/``: the base ``<id>.npz`` (face ids, the FAISS index
with the protected vectors inside it, the template key version) and the delta ``<id>.delta.npz`` (the ids
and protected vectors of the faces added since the base). An add rewrites only the delta, until it
holds more than ``DELTA_MAX`` faces (or ``DELTA_SHARE`` of the base's); then the base is written again and
the delta goes (a 1M-face base is about 0.8 GB: seconds to write; a delta of a few thousand faces,
milliseconds; but each delta face is added to the base's graph at every load). Loading
reads the base and adds the delta's vectors to its index.

They are a cache, never the truth: used only when their face ids are exactly the first faces of the
library as the store holds them now and their key version is the current one; anything else (an erasure,
a key rotation, a crash) makes them stale, and stale files are deleted, not used. Because they hold
protected templates, whatever deletes faces deletes them (``drop``), and every vault open deletes the
stale ones (``sweep``): an erasure that a crash cut short between its commit and ``drop`` leaves no
erased vector on disk past the next open.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..index.storage import read_container, read_container_meta, write_container
from .context import ServiceContext

log = logging.getLogger(__name__)
SNAPSHOT = re.compile(r"(\d+)(\.delta)?\.npz")
DELTA_SHARE = 0.2
DELTA_MAX = 4000  # each delta face is added to the base's HNSW graph at every load (~0.5 ms per face)


def folder(ctx: ServiceContext) -> Path:
    return Path(ctx.settings.index_dir) / "libraries"


def path_of(ctx: ServiceContext, library_id: int) -> Path:
    return folder(ctx) / f"{int(library_id)}.npz"


def delta_of(ctx: ServiceContext, library_id: int) -> Path:
    return folder(ctx) / f"{int(library_id)}.delta.npz"


def _meta_of(library: dict[str, Any], ids: np.ndarray, key_version: int) -> dict[str, Any]:
    return {
        "library_id": int(library["id"]),
        "model_id": library["model_id"],
        "dim": int(library["dim"]),
        "key_version": int(key_version),
        "faces": len(ids),
        "last_id": int(ids[-1]) if len(ids) else 0,
    }


def _fits(meta: dict[str, Any], library: dict[str, Any], key_version: int) -> bool:
    return (
        meta.get("key_version") == key_version
        and meta.get("model_id") == library["model_id"]
        and meta.get("dim") == int(library["dim"])
    )


def _prefix(head: np.ndarray, ids: np.ndarray) -> bool:
    return len(head) <= len(ids) and bool(np.array_equal(head, ids[: len(head)]))


def save(
    ctx: ServiceContext,
    library: dict[str, Any],
    ids: np.ndarray,
    index: Any,
    vectors: np.ndarray,
    key_version: int,
) -> bool:
    """Bring the files of ``library`` up to ``ids`` (committed faces only: call after the commit): the
    delta when the base still fits, else the base. Libraries under ``library_snapshot_faces`` get none
    (rebuilt from the store in about a second). Returns whether a file was written."""
    import faiss

    if len(ids) < max(1, ctx.settings.library_snapshot_faces) or index is None:
        return False
    base = _base_ids(ctx, library, key_version)
    if (
        base is not None
        and _prefix(base, ids)
        and len(ids) - len(base) <= min(DELTA_MAX, DELTA_SHARE * len(base))
    ):
        if len(ids) == len(base):
            delta_of(ctx, library["id"]).unlink(missing_ok=True)
            return False
        new = slice(len(base), len(ids))
        meta = _meta_of(library, ids, key_version) | {"base_faces": len(base)}
        arrays = {"ids": np.asarray(ids[new], np.int64), "vectors": np.asarray(vectors[new], np.float32)}
        write_container(delta_of(ctx, library["id"]), meta, arrays)
        return True
    data = faiss.serialize_index(index)
    arrays = {"ids": np.asarray(ids, np.int64), "index": data}
    write_container(path_of(ctx, library["id"]), _meta_of(library, ids, key_version), arrays)
    delta_of(ctx, library["id"]).unlink(missing_ok=True)
    return True


def _base_ids(ctx: ServiceContext, library: dict[str, Any], key_version: int) -> np.ndarray | None:
    """The face ids of the base snapshot when it is under ``key_version`` (read without its index)."""
    path = path_of(ctx, library["id"])
    if not path.is_file():
        return None
    try:
        meta = read_container_meta(path)
        if not _fits(meta, library, key_version):
            return None
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z["ids"])
    except (ValueError, KeyError, OSError, zipfile.BadZipFile):
        return None


def load(
    ctx: ServiceContext, library: dict[str, Any], store_ids: np.ndarray, key_version: int
) -> tuple[np.ndarray, Any, np.ndarray] | None:
    """(ids, FAISS index, vectors) from the files when they are a prefix of ``store_ids`` (every face id
    of the library now, in order) under ``key_version``; None, and the stale files deleted, otherwise."""
    import faiss

    path = path_of(ctx, library["id"])
    if not path.is_file():
        delta_of(ctx, library["id"]).unlink(missing_ok=True)
        return None
    try:
        meta, arrays = read_container(path)
        ids = arrays["ids"]
        if not (_fits(meta, library, key_version) and _prefix(ids, store_ids)):
            drop(ctx, library["id"])
            return None
        index = faiss.deserialize_index(arrays["index"])
        if index.ntotal != len(ids):
            drop(ctx, library["id"])
            return None
        vectors = np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        log.warning("library snapshot %s unusable, removed: %s", path.name, exc)
        drop(ctx, library["id"])
        return None
    extra = _delta(ctx, library, ids, store_ids, key_version)
    if extra is not None:
        more_ids, more = extra
        index.add(more)
        ids = np.concatenate([ids, more_ids])
        vectors = np.concatenate([vectors, more])
    return ids, index, np.ascontiguousarray(vectors)


def _delta(
    ctx: ServiceContext, library: dict[str, Any], base: np.ndarray, store_ids: np.ndarray, key_version: int
) -> tuple[np.ndarray, np.ndarray] | None:
    path = delta_of(ctx, library["id"])
    if not path.is_file():
        return None
    try:
        meta, arrays = read_container(path)
        ids, vectors = arrays["ids"], arrays["vectors"]
        whole = np.concatenate([base, ids])
        if (
            _fits(meta, library, key_version)
            and meta.get("base_faces") == len(base)
            and _prefix(whole, store_ids)
        ):
            return ids, np.ascontiguousarray(vectors, dtype=np.float32)
    except (ValueError, KeyError) as exc:
        log.warning("library snapshot delta %s unusable, removed: %s", path.name, exc)
    path.unlink(missing_ok=True)
    return None


def drop(ctx: ServiceContext, library_id: int) -> None:
    path_of(ctx, library_id).unlink(missing_ok=True)
    delta_of(ctx, library_id).unlink(missing_ok=True)


def sweep(ctx: ServiceContext) -> int:
    """Delete every file that no longer matches the store (faces deleted since, another key version, a
    deleted library, a temporary file of a killed write). Cheap: one count per file, reading only its
    metadata. Returns how many were deleted."""
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
                    meta = read_container_meta(path)
                except ValueError:
                    stale = True
                else:
                    count = ctx.store.library_faces_upto(conn, int(m.group(1)), int(meta["last_id"]))
                    stale = count != meta["faces"] or meta["key_version"] != current
                    if m.group(2):  # a delta is nothing without its base
                        stale = stale or not path_of(ctx, int(m.group(1))).is_file()
            if stale:
                path.unlink(missing_ok=True)
                removed += 1
    return removed
