"""Grouping faces into people: average-linkage agglomeration over a k-nearest-neighbour graph.

Why average linkage: a wrong merge (two people shown as one) is the worst error a photo library can
make. Single-link methods (chinese whispers, DBSCAN's density chains) join two people as soon as one
pair of their photos looks alike; average linkage joins two groups only when their faces are alike *on
average*, so one odd pair cannot chain two people together. For L2-normalised vectors the mean
similarity of every cross pair of groups A and B is ``(sum_A . sum_B) / (|A| |B|)``, so a group is just
its vector sum and its size, and a merge costs one dot product per neighbouring group.

Candidate pairs come from a kNN graph (FAISS), never from an all-pairs matrix: two groups whose mean
similarity reaches the threshold have at least one pair of faces above it, which the graph holds when
``k`` is large enough.

Constraints, for a library's manual decisions and its incremental growth:

- ``seeds``: faces with the same seed (>= 0) start as one group, and groups of different seeds are never
  merged (a person chosen by hand; every existing person during an incremental add).
- ``forbid``: face index -> seeds it must never join ("not this person").

Two single faces need more (``pair_threshold``) than groups do (``threshold``): a pair of single faces
is the most frequent merge and, in a large collection, the most frequent wrong one (every face is compared
with every other, so a per-comparison false-match rate fit for groups lets through a wrong pair per few
thousand faces); once a group holds two faces, its mean is a steadier estimate and the group threshold
applies. On the shared LFW images wrong pairs were most of the BCubed precision lost at one threshold.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_K = 32
EXACT_LIMIT = 200_000  # above this many faces the graph comes from an HNSW index


@dataclass(frozen=True)
class Graph:
    """Undirected candidate edges (i < j) with their similarity."""

    a: np.ndarray
    b: np.ndarray
    sim: np.ndarray


def knn_graph(
    vectors: np.ndarray,
    k: int = DEFAULT_K,
    min_sim: float = -1.0,
    queries: np.ndarray | None = None,
    index: object | None = None,
) -> Graph:
    """The k nearest neighbours of every face (of ``queries``, row indices into ``vectors``, when given)
    with similarity >= ``min_sim``. ``index``: a FAISS index over ``vectors`` already built."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Graph(empty, empty, np.zeros(0, dtype=np.float32))
    if index is None:
        if n <= EXACT_LIMIT:
            index = faiss.IndexFlatIP(x.shape[1])
        else:
            index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = max(64, 2 * k)  # type: ignore[attr-defined]
        index.add(x)  # type: ignore[attr-defined]
    q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    kk = min(k + 1, n)
    sims, ids = index.search(x[q], kk)  # type: ignore[attr-defined]
    src = np.repeat(q, kk)
    dst = ids.reshape(-1)
    s = sims.reshape(-1)
    keep = (dst >= 0) & (dst != src) & (s >= min_sim)
    src, dst, s = src[keep], dst[keep], s[keep]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)
    return Graph(lo[first], hi[first], s[first].astype(np.float32))


def agglomerate(
    vectors: np.ndarray,
    threshold: float,
    *,
    k: int = DEFAULT_K,
    seeds: np.ndarray | None = None,
    forbid: Mapping[int, set[int]] | None = None,
    graph: Graph | None = None,
    soft: set[int] | None = None,
    pair_threshold: float | None = None,
) -> np.ndarray:
    """A group label per face. Seeded faces keep their seed as label; every other group gets a new label
    above the largest seed (in order of its first face). ``soft``: seeds that may still be merged with
    each other (automatic people during an incremental add); the merged group keeps the larger one's
    seed. ``pair_threshold``: the similarity two single faces need (default: ``threshold``)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    seeds = np.full(n, -1, dtype=np.int64) if seeds is None else np.asarray(seeds, dtype=np.int64)
    forbid = forbid or {}
    soft_seeds = soft or set()
    if graph is None:
        graph = knn_graph(vectors, k, min_sim=threshold)  # a mean above it needs a pair above it
    # Initial groups: one per seed, one per free face.
    group_of = np.empty(n, dtype=np.int64)
    anchor: list[int] = []
    seed_group: dict[int, int] = {}
    for i in range(n):
        s = int(seeds[i])
        if s >= 0:
            g = seed_group.get(s)
            if g is None:
                g = seed_group[s] = len(anchor)
                anchor.append(s)
            group_of[i] = g
        else:
            group_of[i] = len(anchor)
            anchor.append(-1)
    m = len(anchor)
    sums = np.zeros((m, x.shape[1]))
    np.add.at(sums, group_of, x)
    counts = np.bincount(group_of, minlength=m).astype(np.float64)
    banned: list[set[int]] = [set() for _ in range(m)]
    for i, bad in forbid.items():
        banned[int(group_of[i])] |= set(bad)
    neigh: list[set[int]] = [set() for _ in range(m)]
    ga, gb = group_of[graph.a], group_of[graph.b]
    for a, b in zip(ga.tolist(), gb.tolist(), strict=True):
        if a != b:
            neigh[a].add(b)
            neigh[b].add(a)
    alive = np.ones(m, dtype=bool)
    parent = np.arange(m)
    version = np.zeros(m, dtype=np.int64)

    def allowed(a: int, b: int) -> bool:
        sa, sb = anchor[a], anchor[b]
        if sa >= 0 and sb >= 0 and not (sa in soft_seeds and sb in soft_seeds):
            return False
        return not ((sa >= 0 and sa in banned[b]) or (sb >= 0 and sb in banned[a]))

    heap: list[tuple[float, int, int, int, int]] = []
    pair = threshold if pair_threshold is None else pair_threshold

    def margin(a: int, others: np.ndarray) -> np.ndarray:
        """Mean cross similarity minus what the two groups need (merge when >= 0; the largest first)."""
        mean = (sums[others] @ sums[a]) / (counts[others] * counts[a])
        if counts[a] == 1:
            return mean - np.where(counts[others] == 1, pair, threshold)
        return mean - threshold

    def push_all(a: int) -> None:
        if not neigh[a]:
            return
        others = np.fromiter(neigh[a], dtype=np.int64)
        for b, mg in zip(others.tolist(), margin(a, others).tolist(), strict=True):
            if mg >= 0 and allowed(a, b):
                heapq.heappush(heap, (-mg, a, b, int(version[a]), int(version[b])))

    for a in range(m):
        if neigh[a]:
            others = np.fromiter((b for b in neigh[a] if b > a), dtype=np.int64)
            if len(others):
                for b, mg in zip(others.tolist(), margin(a, others).tolist(), strict=True):
                    if mg >= 0 and allowed(a, b):
                        heap.append((-mg, a, b, 0, 0))
    heapq.heapify(heap)
    while heap:
        _, a, b, va, vb = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or version[a] != va or version[b] != vb or not allowed(a, b):
            continue
        if (anchor[b] >= 0, counts[b]) > (anchor[a] >= 0, counts[a]):  # keep the anchored, larger slot
            a, b = b, a
        sums[a] += sums[b]
        counts[a] += counts[b]
        anchor[a] = anchor[a] if anchor[a] >= 0 else anchor[b]
        banned[a] |= banned[b]
        alive[b] = False
        parent[b] = a
        neigh[a] = (neigh[a] | neigh[b]) - {a, b}
        for c in neigh[b]:
            if c != a:
                neigh[c].discard(b)
                neigh[c].add(a)
        neigh[b] = set()
        version[a] += 1
        push_all(a)
    roots = np.array([_root(parent, g) for g in range(m)], dtype=np.int64)
    final = roots[group_of]
    top = int(seeds.max()) if n and seeds.max() >= 0 else -1
    labels = np.empty(n, dtype=np.int64)
    fresh: dict[int, int] = {}
    for i in range(n):
        r = int(final[i])
        if anchor[r] >= 0:
            labels[i] = anchor[r]
        else:
            if r not in fresh:
                top += 1
                fresh[r] = top
            labels[i] = fresh[r]
    return labels


def _root(parent: np.ndarray, g: int) -> int:
    while parent[g] != g:
        parent[g] = parent[parent[g]]
        g = int(parent[g])
    return g
