"""Grouping a library's faces into people: the incremental step of every ``library add`` and the full
``library recluster``, both with ``eval.grouping.agglomerate`` at the threshold of the model's
calibration (the false-match rate ``eval.cluster.DEFAULT_CLUSTER_FMR``).

Incremental: only the faces without a person are placed. Their k nearest neighbours (FAISS) name the
people they may join; those people's faces and the new ones are grouped with every existing person as a
seed, so a new face joins a person, starts a new one, or brings two automatic people together; a named
person, or one with faces placed by hand, is never merged automatically. Nothing else moves.

Recluster: every face is grouped again. Faces placed by hand (``pinned``) stay with their person and seed
it; "not this person" decisions are kept (a face never returns to that person); the new groups take the
number (and name) of the person whose faces they hold most of, so people keep their identity.

The vectors of a library are kept per process (``LibraryVectors``), opened once and brought up to date by
face id (faces are only ever added with higher ids); a deleted face drops the cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection

from .. import calibration
from ..audit_events import LibraryReclustered
from ..eval.cluster import DEFAULT_CLUSTER_FMR, DEFAULT_PAIR_FMR
from ..eval.grouping import DEFAULT_K, Graph, agglomerate
from . import library_snapshot
from .context import ServiceContext

Library = dict[str, Any]
EXACT_SEARCH_LIMIT = 200_000


def face_context(library: Library) -> bytes:
    """Associated data binding a stored face template to its library and model."""
    return f"library-face:{library['id']}:{library['model_id']}".encode()


def crop_context(library_id: int, face_id: int) -> bytes:
    """Associated data binding a face crop to its library and face."""
    return f"library-crop:{library_id}:{face_id}".encode()


def cluster_threshold(model_id: str) -> tuple[float, float]:
    """(group threshold, single-pair threshold) of ``model_id`` from its calibration."""
    cal = calibration.for_model(model_id)
    return cal.threshold_for(DEFAULT_CLUSTER_FMR), cal.threshold_for(DEFAULT_PAIR_FMR)


@dataclass
class LibraryVectors:
    """Every face vector of one library, protected under the current key (one space for all)."""

    key_version: int
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray | None = None
    index: Any = None

    @property
    def last_id(self) -> int:
        return int(self.ids[-1]) if len(self.ids) else 0

    def add(self, ids: np.ndarray, vecs: np.ndarray, expected: int = 0) -> None:
        """Append faces; ``expected``: how many the library holds in all (the index kind follows it,
        not the size of the first page read)."""
        import faiss

        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if self.index is None:
            self.index = faiss.IndexFlatIP(vecs.shape[1])
            if max(expected, len(self.ids) + len(ids)) > EXACT_SEARCH_LIMIT:
                self.index = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
                self.index.hnsw.efSearch = 128
        self.index.add(vecs)
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self.vectors = vecs if self.vectors is None else np.concatenate([self.vectors, vecs])

    def positions(self, face_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ids, face_ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, face ids) of the k nearest faces of each query; -1 where fewer exist."""
        if self.index is None or not len(self.ids):
            n = len(queries)
            return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
        sims, pos = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.ids)))
        ids = np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)
        return sims, ids


_cache: dict[tuple[str, int], LibraryVectors] = {}
_cache_lock = threading.Lock()


def library_vectors(
    ctx: ServiceContext, library: Library, conn: Connection, face_ids: list[int]
) -> LibraryVectors:
    """The library's vectors as of this transaction (``face_ids``: every face id it holds, in order)."""
    key = ctx.current_key(conn)
    slot = (ctx.store.url, int(library["id"]))
    with _cache_lock:
        cached = _cache.get(slot)
        ids = np.asarray(face_ids, dtype=np.int64)
        if cached is not None and (cached.key_version != key.version or not _prefix_ok(cached.ids, ids)):
            cached = None
        if cached is None:
            cached = LibraryVectors(key.version)
            snap = library_snapshot.load(ctx, library, ids, key.version)
            if snap is not None:  # a new process on a large library: the index as the last add left it
                cached.ids, cached.index, cached.vectors = snap
        ctx_bytes = face_context(library)
        for rows in ctx.store.library_face_blobs(conn, library["id"], cached.last_id):
            new_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = []
            for _, blob, version in rows:
                v = ctx.keys.key(version).open(blob, ctx_bytes, library["dim"])
                if version != key.version:  # another key's space: back to raw, into the current one
                    v = key.protect(ctx.keys.key(version).unprotect(v))
                vecs.append(v)
            cached.add(new_ids, np.stack(vecs), expected=len(ids))
        _cache[slot] = cached
        return cached


def _prefix_ok(cached: np.ndarray, now: np.ndarray) -> bool:
    """The cache holds exactly the first faces of the library as it is now (nothing deleted since)."""
    return len(cached) <= len(now) and bool(np.array_equal(cached, now[: len(cached)]))


def forget(ctx: ServiceContext, library_id: int) -> None:
    """Faces of the library were deleted: its vectors in memory and on disk go."""
    with _cache_lock:
        _cache.pop((ctx.store.url, int(library_id)), None)
        library_snapshot.drop(ctx, library_id)


def save_snapshot(ctx: ServiceContext, library: Library) -> bool:
    """After a commit that added faces: write the library's snapshot for the next process (large
    libraries only), from this process's vectors when they are exactly the library's committed faces."""
    slot = (ctx.store.url, int(library["id"]))
    with _cache_lock, ctx.read() as conn:
        cached = _cache.get(slot)
        if cached is None or cached.key_version != ctx.current_key(conn).version:
            return False
        # exactly the committed faces (ids only grow, never come back): as many up to the last cached id
        # as cached, and none after it; else a rolled-back add, or another writer since
        last = cached.last_id
        if ctx.store.library_faces_upto(conn, library["id"], last) != len(cached.ids) or (
            ctx.store.library_faces_upto(conn, library["id"], 2**62) != len(cached.ids)
        ):
            return False
        return library_snapshot.save(
            ctx, library, cached.ids, cached.index, cached.vectors, cached.key_version
        )


# ---- the incremental step ------------------------------------------------------------------------
def assign_new_faces(ctx: ServiceContext, library: Library, conn: Connection) -> dict[str, int]:
    """Place every face of the library that has no person yet, inside the caller's write transaction.
    Returns counts: faces placed, people created, people merged."""
    rows = ctx.store.library_face_rows(conn, library["id"])
    if not rows:
        return {"placed": 0, "people_created": 0, "people_merged": 0}
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    person = np.fromiter((-1 if r[1] is None else r[1] for r in rows), dtype=np.int64, count=len(rows))
    free_pos = np.flatnonzero(person < 0)
    if not len(free_pos):
        return {"placed": 0, "people_created": 0, "people_merged": 0}
    lv = library_vectors(ctx, library, conn, ids.tolist())
    thr, pair = cluster_threshold(library["model_id"])
    sims, nn_ids = lv.search(lv.vectors[free_pos], DEFAULT_K + 1)
    touched = {int(person[p]) for p in lv.positions(nn_ids[(nn_ids >= 0) & (sims >= thr)])} - {-1}
    sub = np.flatnonzero((person < 0) | np.isin(person, list(touched)))
    local = {int(g): i for i, g in enumerate(sub)}
    a, b, s = [], [], []
    for qi, p in enumerate(free_pos):
        for fid, sc in zip(nn_ids[qi], sims[qi], strict=True):
            if fid < 0 or sc < thr:
                continue
            j = local.get(int(lv.positions(np.asarray([fid]))[0]))
            if j is not None and j != local[int(p)]:
                a.append(min(j, local[int(p)]))
                b.append(max(j, local[int(p)]))
                s.append(sc)
    graph = Graph(
        np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), np.asarray(s, dtype=np.float32)
    )
    people = ctx.store.people_by_id(conn, touched)
    pinned_people = {r[1] for r in rows if r[2] and r[1] is not None}
    soft = {pid for pid, p in people.items() if p["consent_id"] is None and pid not in pinned_people}
    forbid = _forbid(ctx, conn, library, ids[sub])
    labels = agglomerate(
        lv.vectors[sub], thr, seeds=person[sub], forbid=forbid, graph=graph, soft=soft, pair_threshold=pair
    )
    return _apply_labels(ctx, conn, library, ids[sub], person[sub], labels)


def _forbid(
    ctx: ServiceContext, conn: Connection, library: Library, face_ids: np.ndarray
) -> dict[int, set[int]]:
    pos = {int(f): i for i, f in enumerate(face_ids)}
    out: dict[int, set[int]] = {}
    for face_id, person_id in ctx.store.not_person_pairs(conn, library["id"]):
        if face_id in pos:
            out.setdefault(pos[face_id], set()).add(person_id)
    return out


def _apply_labels(
    ctx: ServiceContext,
    conn: Connection,
    library: Library,
    face_ids: np.ndarray,
    before: np.ndarray,
    labels: np.ndarray,
) -> dict[str, int]:
    """Write the grouping: labels that are existing person ids keep them; the others become new people."""
    existing = {int(p) for p in before if p >= 0}
    created = 0
    new_person: dict[int, int] = {}
    moves: dict[int, list[int]] = {}
    for fid, old, lab in zip(face_ids.tolist(), before.tolist(), labels.tolist(), strict=True):
        target = lab
        if lab not in existing:
            if lab not in new_person:
                new_person[lab] = ctx.store.add_person(conn, library["id"])["id"]
                created += 1
            target = new_person[lab]
        if target != old:
            moves.setdefault(target, []).append(fid)
    for target, fids in moves.items():
        ctx.store.set_face_person(conn, fids, target)
        ctx.store.touch_person(conn, target)
    gone = ctx.store.empty_people(conn, library["id"])
    ctx.store.delete_people(conn, gone)
    placed = int((before < 0).sum())
    return {"placed": placed, "people_created": created, "people_merged": len(gone)}


# ---- the full pass -------------------------------------------------------------------------------
def recluster(ctx: ServiceContext, library_name: str) -> dict[str, Any]:
    """Group every face of the library again, keeping the manual decisions (see the module's doc)."""
    with ctx.write() as conn:
        library = ctx.store.get_library(conn, library_name)
        rows = ctx.store.library_face_rows(conn, library["id"])
        people_before = len(ctx.store.list_people(conn, library["id"]))
        if not rows:
            return {"library": library_name, "faces": 0, "people_before": people_before, "people_after": 0}
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        before = np.fromiter((-1 if r[1] is None else r[1] for r in rows), dtype=np.int64, count=len(rows))
        pinned = np.fromiter((r[2] for r in rows), dtype=bool, count=len(rows))
        lv = library_vectors(ctx, library, conn, ids.tolist())
        seeds = np.where(pinned, before, -1)
        forbid = _forbid(ctx, conn, library, ids)
        thr, pair = cluster_threshold(library["model_id"])
        labels = agglomerate(lv.vectors, thr, seeds=seeds, forbid=forbid, pair_threshold=pair)
        labels = _keep_identities(labels, before, seeds, forbid)
        _apply_labels(ctx, conn, library, ids, before, labels)
        people_after = len(ctx.store.list_people(conn, library["id"]))
        ctx.log(
            conn,
            LibraryReclustered(
                purpose=library["purpose"],
                library=library_name,
                faces=len(ids),
                people_before=people_before,
                people_after=people_after,
                pinned_faces=int(pinned.sum()),
            ),
        )
    return {
        "library": library_name,
        "faces": int(len(ids)),
        "people_before": people_before,
        "people_after": people_after,
        "pinned_faces": int(pinned.sum()),
    }


def _keep_identities(
    labels: np.ndarray, before: np.ndarray, seeds: np.ndarray, forbid: dict[int, set[int]]
) -> np.ndarray:
    """Give each new group the person whose faces it holds most of (each person at most once, largest
    overlaps first), unless one of its faces ruled that person out; seeded groups keep their seed."""
    seeded = {int(s) for s in seeds if s >= 0}
    overlap: dict[tuple[int, int], int] = {}
    for lab, old in zip(labels.tolist(), before.tolist(), strict=True):
        if lab not in seeded and old >= 0 and old not in seeded:
            overlap[(lab, old)] = overlap.get((lab, old), 0) + 1
    banned_by_label: dict[int, set[int]] = {}
    for i, bad in forbid.items():
        banned_by_label.setdefault(int(labels[i]), set()).update(bad)
    mapping: dict[int, int] = {}
    used: set[int] = set(seeded)
    for (lab, old), _ in sorted(overlap.items(), key=lambda kv: -kv[1]):
        if lab in mapping or old in used or old in banned_by_label.get(lab, set()):
            continue
        mapping[lab] = old
        used.add(old)
    top = max(int(labels.max()), int(before.max()), 0) + 1
    out = labels.copy()
    fresh: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab in seeded:
            continue
        if lab in mapping:
            out[i] = mapping[lab]
        else:  # a group of no earlier person: a label no person id can be
            if lab not in fresh:
                fresh[lab] = top + len(fresh) + 10**12
            out[i] = fresh[lab]
    return out


# ---- evaluation (``facevault eval cluster``) -------------------------------------------------------------
def evaluate_clustering(
    images: str,
    *,
    model: str | None = None,
    fmr: float | None = None,
    workers: int | None = None,
    cache: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """``eval.cluster.run_cluster`` with the vault settings' model (an identity-per-folder dataset)."""
    from ..config import load_settings
    from ..eval.cluster import run_cluster

    settings = load_settings()
    return run_cluster(
        images,
        model_id=model or settings.default_model,
        settings=settings,
        fmr=fmr or DEFAULT_CLUSTER_FMR,
        workers=workers,
        cache=cache,
        progress=progress,
    )
