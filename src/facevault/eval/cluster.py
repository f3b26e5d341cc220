"""``facevault eval cluster``: how well faces are grouped into people, on an identity-per-folder dataset.

Metrics (identity = folder): pairwise precision, recall and F (over every pair of faces put in one
group / of one identity); BCubed precision, recall and F (per face: how much of its group is its
identity, and how much of its identity is in its group, averaged over faces); people found against true
identities; singletons. Pairwise precision comes first: a wrong merge is the worst error a library makes.

Baselines, on the same embeddings in the same run: dlib's ``chinese_whispers_clustering`` and DBSCAN with
Immich's core rule (a face is a core face when at least 3 faces, itself included, lie within the
threshold). Both are run over the same calibrated thresholds as facevault's own grouping (a false-match
rate per comparison -> this model's similarity), and compared at equal pairwise precision: the best
BCubed F each reaches without falling below facevault's precision.

The incremental build feeds faces in a random order, in batches, through the library's own incremental
rule (``grouping.agglomerate`` with every existing person as a seed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import calibration
from ..config import Settings
from .grouping import DEFAULT_K, agglomerate, knn_graph

# The operating point of library grouping: the per-comparison false-match rate of the mean similarity two
# groups must reach to be merged, and the stricter one of two single faces (``grouping.agglomerate``).
# Chosen on the shared LFW images (docs/BENCHMARKS.md): 2e-4 / 3e-5 gave pairwise precision 0.991 with
# BCubed F 0.951; one rate for both (1e-4) gave 0.993 / 0.941.
DEFAULT_CLUSTER_FMR = 2e-4
DEFAULT_PAIR_FMR = 3e-5
SWEEP_FMRS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 2e-5, 1e-5, 7e-6, 5e-6, 3e-6, 1e-6)
IMMICH_MIN_FACES = 3
INCREMENTAL_BATCH = 500


# ---- metrics -----------------------------------------------------------------------------------------
def _pairs(n: np.ndarray) -> float:
    n = n.astype(np.float64)
    return float((n * (n - 1) / 2).sum())


def cluster_metrics(labels: Sequence[int] | np.ndarray, truth: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Pairwise and BCubed precision/recall/F, people found, singletons."""
    pred = np.asarray(labels, dtype=np.int64)
    true = np.asarray(truth, dtype=np.int64)
    if pred.shape != true.shape:
        raise ValueError("labels and truth differ in length")
    _, p_inv = np.unique(pred, return_inverse=True)
    _, t_inv = np.unique(true, return_inverse=True)
    p_size = np.bincount(p_inv)
    t_size = np.bincount(t_inv)
    joint = p_inv.astype(np.int64) * (t_inv.max() + 1) + t_inv
    _, j_inv, j_size = np.unique(joint, return_inverse=True, return_counts=True)
    tp, pp, tt = _pairs(j_size), _pairs(p_size), _pairs(t_size)
    pw_p = tp / pp if pp else 1.0
    pw_r = tp / tt if tt else 1.0
    overlap = j_size[j_inv].astype(np.float64)
    b_p = float(np.mean(overlap / p_size[p_inv]))
    b_r = float(np.mean(overlap / t_size[t_inv]))
    return {
        "faces": int(len(pred)),
        "pairwise_precision": round(pw_p, 4),
        "pairwise_recall": round(pw_r, 4),
        "pairwise_f": round(_f(pw_p, pw_r), 4),
        "bcubed_precision": round(b_p, 4),
        "bcubed_recall": round(b_r, 4),
        "bcubed_f": round(_f(b_p, b_r), 4),
        "people_found": int(len(p_size)),
        "identities": int(len(t_size)),
        "singletons_found": int((p_size == 1).sum()),
        "singleton_identities": int((t_size == 1).sum()),
    }


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


# ---- baselines ---------------------------------------------------------------------------------------
def chinese_whispers(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """dlib's chinese whispers: an edge wherever the Euclidean distance is below the distance that
    matches cosine ``threshold`` on unit vectors."""
    import dlib

    dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * threshold)))
    descriptors = [dlib.vector(v.astype(np.float64).tolist()) for v in vectors]
    return np.asarray(dlib.chinese_whispers_clustering(descriptors, dist), dtype=np.int64)


def dbscan_immich(vectors: np.ndarray, threshold: float, min_faces: int = IMMICH_MIN_FACES) -> np.ndarray:
    """DBSCAN as Immich runs it: a core face has at least ``min_faces`` faces (itself included) at
    similarity >= ``threshold``; clusters grow from core faces; a face no core face reaches is alone."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, _, ids = index.range_search(x, float(threshold) - 1e-7)
    neigh = [ids[lims[i] : lims[i + 1]] for i in range(n)]
    core = np.array([len(nb) >= min_faces for nb in neigh])  # includes the face itself
    labels = np.full(n, -1, dtype=np.int64)
    current = 0
    for i in range(n):
        if labels[i] >= 0 or not core[i]:
            continue
        labels[i] = current
        stack = [i]
        while stack:
            j = stack.pop()
            for nb in neigh[j]:
                if labels[nb] < 0:
                    labels[nb] = current
                    if core[nb]:
                        stack.append(int(nb))
        current += 1
    noise = labels < 0
    labels[noise] = current + np.arange(int(noise.sum()))
    return labels


# ---- facevault's grouping: batch and incremental -----------------------------------------------------
def batch_grouping(
    vectors: np.ndarray, threshold: float, pair_threshold: float | None = None, k: int = DEFAULT_K
) -> np.ndarray:
    return agglomerate(vectors, threshold, k=k, pair_threshold=pair_threshold)


def incremental_grouping(
    vectors: np.ndarray,
    threshold: float,
    *,
    pair_threshold: float | None = None,
    batch: int = INCREMENTAL_BATCH,
    seed: int = 0,
    k: int = DEFAULT_K,
) -> np.ndarray:
    """Faces arriving in a random order, ``batch`` at a time: each batch joins the people made so far
    (every existing person a soft seed, so new faces may also bring two automatic people together),
    with a kNN graph of the new faces only. Returns labels in the original order."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    xs = x[order]
    labels = np.full(len(x), -1, dtype=np.int64)
    index = faiss.IndexFlatIP(x.shape[1])
    for start in range(0, len(xs), batch):
        end = min(start + batch, len(xs))
        index.add(xs[start:end])
        sub = xs[:end]
        seeds = labels[:end].copy()
        graph = knn_graph(sub, k, min_sim=threshold, queries=np.arange(start, end), index=index)
        soft = {int(s) for s in np.unique(seeds[:start])}
        labels[:end] = agglomerate(
            sub, threshold, seeds=seeds, graph=graph, soft=soft, pair_threshold=pair_threshold
        )
    out = np.empty_like(labels)
    out[order] = labels
    return out


# ---- the protocol ------------------------------------------------------------------------------------
def identity_files(images: str | Path) -> tuple[list[str], np.ndarray]:
    root = Path(images)
    people = sorted(p for p in root.iterdir() if p.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    for label, person in enumerate(people):
        for f in sorted(person.iterdir()):
            if f.suffix.lower() in exts:
                paths.append(str(f))
                labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def load_embeddings(
    images: str | Path,
    *,
    model_id: str,
    settings: Settings,
    workers: int | None = None,
    cache: str | Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(unit vectors, identity labels, images with no face detected) of every image, embedded with the
    evaluation protocols' one-face-per-image rule; ``cache``: an .npz written once and reused when its
    paths and model match."""
    paths, labels = identity_files(images)
    if cache is not None and Path(cache).exists():
        z = np.load(cache)
        if str(z["model"]) == model_id and list(map(str, z["paths"])) == paths:
            vec, det = z["vectors"], z["detected"]
            keep = ~np.isnan(vec).any(axis=1)
            return vec[keep], labels[keep], int((~det[keep]).sum())
    from .embedding import embed_files

    embs = embed_files(paths, model_id=model_id, settings=settings, workers=workers, progress=progress)
    dim = next((e.vector.shape[0] for e in embs if e.vector is not None), 128)
    vec = np.stack([e.vector if e.vector is not None else np.full(dim, np.nan) for e in embs]).astype(
        np.float32
    )
    det = np.asarray([e.detected for e in embs])
    if cache is not None:
        tmp = Path(f"{cache}.tmp.npz")
        np.savez(tmp, vectors=vec, paths=np.asarray(paths), detected=det, model=model_id)
        os.replace(tmp, cache)
    keep = ~np.isnan(vec).any(axis=1)
    return vec[keep], labels[keep], int((~det[keep]).sum())


def evaluate(
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    model_id: str,
    fmr: float = DEFAULT_CLUSTER_FMR,
    pair_fmr: float = DEFAULT_PAIR_FMR,
    sweep: Sequence[float] = SWEEP_FMRS,
    incremental_batch: int = INCREMENTAL_BATCH,
) -> dict[str, Any]:
    """facevault's grouping (batch and incremental) at ``fmr`` and both baselines over ``sweep``."""
    cal = calibration.for_model(model_id)
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    thr, pair = cal.threshold_for(fmr), cal.threshold_for(pair_fmr)
    t0 = time.perf_counter()
    ours = cluster_metrics(batch_grouping(x, thr, pair), labels)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    inc = cluster_metrics(incremental_grouping(x, thr, pair_threshold=pair, batch=incremental_batch), labels)
    t_inc = time.perf_counter() - t0
    base: dict[str, list[dict[str, Any]]] = {"chinese_whispers": [], "dbscan_immich": []}
    for f in sweep:
        t = cal.threshold_for(f)
        for name, fn in (("chinese_whispers", chinese_whispers), ("dbscan_immich", dbscan_immich)):
            base[name].append({"fmr": f, "threshold": round(t, 5), **cluster_metrics(fn(x, t), labels)})
    at_equal = {}
    for name, rows in base.items():
        ok = [r for r in rows if r["pairwise_precision"] >= ours["pairwise_precision"]]
        best = max(ok, key=lambda r: r["bcubed_f"]) if ok else None
        at_equal[name] = best
    return {
        "model_id": model_id,
        "faces": int(len(x)),
        "facevault": {
            "fmr": fmr,
            "threshold": round(thr, 5),
            "pair_fmr": pair_fmr,
            "pair_threshold": round(pair, 5),
            "seconds": round(t_batch, 2),
            **ours,
        },
        "incremental": {
            "batch": incremental_batch,
            "seconds": round(t_inc, 2),
            "bcubed_f_gap": round(ours["bcubed_f"] - inc["bcubed_f"], 4),
            **inc,
        },
        "baselines_at_equal_precision": at_equal,
        "baselines": base,
    }


def run_cluster(
    images: str | Path,
    *,
    model_id: str,
    settings: Settings,
    fmr: float = DEFAULT_CLUSTER_FMR,
    workers: int | None = None,
    cache: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    vectors, labels, fallback = load_embeddings(
        images, model_id=model_id, settings=settings, workers=workers, cache=cache, progress=progress
    )
    out = evaluate(vectors, labels, model_id=model_id, fmr=fmr)
    out["images"] = str(images)
    out["no_face_detected"] = fallback
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
