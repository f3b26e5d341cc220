"""Photo-library benchmark: ingest throughput on real multi-face photos, and the cost of grouping.

1. Ingest: ``library add`` of real photos (FDDB multi-face news photos, LFW portraits) into a fresh vault,
   in photos/s and faces/s, with the store's bytes per face.
2. Incremental grouping: 1,000 new faces joining a library of N faces (N = 10k, 100k, 1M): real LFW
   embeddings (``bench.index_data.lfw_embeddings`` or the eval cache) plus calibrated synthetic
   distractors (``GaussianFaces``), each distractor its own person. Timed: the kNN search of the new
   faces against the library index and the seeded grouping of the touched people, as
   ``service.library_cluster.assign_new_faces`` does it.
3. Full re-cluster of N faces: kNN graph (FAISS; HNSW above 200k) + average-linkage grouping.

    nice -n 10 python -m bench.library --ingest 200 --sizes 10000,100000 [--recluster 100000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench.index_data import GaussianFaces, data_dir, lfw_embeddings

EVAL_CACHE = Path("/tmp/fv-lib/lfw-emb.npz")


def real_faces() -> tuple[np.ndarray, np.ndarray]:
    """Real LFW vectors and identity labels: the eval cache when present, else bench.index_data's."""
    if EVAL_CACHE.exists():
        z = np.load(EVAL_CACHE)
        vec = z["vectors"]
        keep = ~np.isnan(vec).any(axis=1)
        names = [Path(str(p)).parent.name for p in z["paths"]]
        _, labels = np.unique(np.asarray(names), return_inverse=True)
        return vec[keep] / np.linalg.norm(vec[keep], axis=1, keepdims=True), labels[keep]
    faces = lfw_embeddings()
    if faces is None:
        raise SystemExit("no LFW embeddings: run with the shared data or the eval cache")
    return faces.vectors, faces.labels


def bench_ingest(n: int, workers: int) -> dict[str, Any]:
    import facevault

    out: dict[str, Any] = {}
    sets = {
        "fddb": sorted((data_dir() / "fddb" / "images").rglob("*.jpg"))[:n],
        "lfw": sorted((data_dir() / "lfw" / "lfw-deepfunneled").rglob("*.jpg"))[::13][:n],
    }
    for name, files in sets.items():
        if not files:
            continue
        home = Path(tempfile.mkdtemp(prefix="fv-bench-lib-"))
        try:
            v = facevault.open(str(home / "vault"), create=True)
            v.libraries.create_library("bench", purpose="benchmark", basis="benchmark")
            t0 = time.perf_counter()
            r = v.libraries.library_add("bench", [str(f) for f in files], workers=workers)
            dt = time.perf_counter() - t0
            db = Path(v.settings.db_path)
            v.close()
            out[name] = {
                "photos": r["added"],
                "faces": r["faces"],
                "seconds": round(dt, 1),
                "photos_per_s": round(r["added"] / dt, 2),
                "faces_per_s": round(r["faces"] / dt, 2),
                "store_bytes_per_face": round(db.stat().st_size / max(r["faces"], 1)),
                "workers": workers,
            }
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return out


def library_of(
    size: int, real: np.ndarray, labels: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``size`` faces: the real ones (persons = identities) and distractors (each its own person)."""
    n_real = min(len(real), size)
    gen = GaussianFaces(real, real.shape[1], seed=seed)
    extra = (
        gen.sample(size - n_real, seed=seed + 1)
        if size > n_real
        else np.zeros((0, real.shape[1]), np.float32)
    )
    vectors = np.concatenate([real[:n_real].astype(np.float32), extra])
    person = np.concatenate([labels[:n_real], labels.max() + 1 + np.arange(len(extra))])
    return vectors, person


def build_index(vectors: np.ndarray) -> tuple[Any, float]:
    import faiss

    from facevault.eval.grouping import EXACT_LIMIT

    t0 = time.perf_counter()
    if len(vectors) > EXACT_LIMIT:
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, time.perf_counter() - t0


def incremental_cost(
    size: int, real: np.ndarray, labels: np.ndarray, threshold: float, pair: float, new: int = 1000
) -> dict[str, Any]:
    """Seconds for ``new`` faces (real faces held out, of identities in the library, plus distractors)
    to join a library of ``size`` faces; the library's index is built beforehand (kept per process)."""
    from facevault.eval.grouping import DEFAULT_K, Graph, agglomerate

    rng = np.random.default_rng(5)
    held = rng.choice(len(real), size=min(new // 2, len(real) // 4), replace=False)
    keep = np.setdiff1d(np.arange(len(real)), held)
    vectors, person = library_of(size, real[keep], labels[keep])
    gen = GaussianFaces(real, real.shape[1], seed=11)
    newv = np.concatenate([real[held], gen.sample(new - len(held), seed=12)]).astype(np.float32)
    index, build_s = build_index(vectors)
    t0 = time.perf_counter()
    sims, pos = index.search(newv, DEFAULT_K + 1)
    ok = (pos >= 0) & (sims >= threshold)
    touched = np.unique(person[pos[ok]])
    sub = np.flatnonzero(np.isin(person, touched))
    allv = np.concatenate([vectors[sub], newv])
    seeds = np.concatenate([person[sub], np.full(len(newv), -1)])
    local = {int(g): i for i, g in enumerate(sub)}
    a, b, s = [], [], []
    for qi in range(len(newv)):
        me = len(sub) + qi
        for p, sc in zip(pos[qi], sims[qi], strict=True):
            if p >= 0 and sc >= threshold and int(p) in local:
                a.append(min(me, local[int(p)]))
                b.append(max(me, local[int(p)]))
                s.append(sc)
    # new faces among themselves: their own kNN (as the library's index holds them after their commit)
    import faiss

    own = faiss.IndexFlatIP(newv.shape[1])
    own.add(newv)
    s2, p2 = own.search(newv, DEFAULT_K + 1)
    for qi in range(len(newv)):
        for p, sc in zip(p2[qi], s2[qi], strict=True):
            if p > qi and sc >= threshold:
                a.append(len(sub) + qi)
                b.append(len(sub) + int(p))
                s.append(sc)
    graph = Graph(
        np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), np.asarray(s, dtype=np.float32)
    )
    soft = {int(x) for x in touched}
    agglomerate(allv, threshold, seeds=seeds, graph=graph, soft=soft, pair_threshold=pair)
    dt = time.perf_counter() - t0
    return {
        "library_faces": size,
        "new_faces": new,
        "seconds": round(dt, 3),
        "index_build_seconds": round(build_s, 1),
        "touched_faces": int(len(sub)),
        "index_bytes_per_face": 4 * vectors.shape[1] + (32 * 2 * 4 if size > 200_000 else 0),
    }


def recluster_cost(
    size: int, real: np.ndarray, labels: np.ndarray, threshold: float, pair: float
) -> dict[str, Any]:
    from facevault.eval.grouping import agglomerate, knn_graph

    vectors, _ = library_of(size, real, labels)
    t0 = time.perf_counter()
    graph = knn_graph(vectors, min_sim=threshold)
    t_graph = time.perf_counter() - t0
    labels_out = agglomerate(vectors, threshold, graph=graph, pair_threshold=pair)
    dt = time.perf_counter() - t0
    return {
        "faces": size,
        "seconds": round(dt, 1),
        "graph_seconds": round(t_graph, 1),
        "edges": int(len(graph.a)),
        "people": int(len(np.unique(labels_out))),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ingest", type=int, default=0, help="photos per data set for the ingest run (0: skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sizes", default="10000,100000", help="library sizes for the incremental step")
    ap.add_argument("--recluster", type=int, default=0, help="faces for the full re-cluster (0: skip)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from facevault import calibration
    from facevault.eval.cluster import DEFAULT_CLUSTER_FMR, DEFAULT_PAIR_FMR

    cal = calibration.for_model("dlib-resnet-v1")
    threshold, pair = cal.threshold_for(DEFAULT_CLUSTER_FMR), cal.threshold_for(DEFAULT_PAIR_FMR)
    report: dict[str, Any] = {
        "threshold": round(threshold, 5),
        "pair": round(pair, 5),
        "cores": os.cpu_count(),
    }
    if args.ingest:
        report["ingest"] = bench_ingest(args.ingest, args.workers)
        print(json.dumps(report["ingest"], indent=1), flush=True)
    real, labels = real_faces()
    report["incremental"] = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        row = incremental_cost(size, real, labels, threshold, pair)
        report["incremental"].append(row)
        print(json.dumps(row), flush=True)
    if args.recluster:
        report["recluster"] = recluster_cost(args.recluster, real, labels, threshold, pair)
        print(json.dumps(report["recluster"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
