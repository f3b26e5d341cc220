"""Index benchmark: facevault's embedded FAISS index against exact search, in the same run.

    python -m bench.index --n 1000000 [--dim 128] [--kinds auto] [--probes 1000]
    python -m bench.index --backend milvus-server --n 1000000 [--milvus-kinds IVF_SQ8,HNSW]

``--backend milvus-server`` also runs facevault's Milvus backend on a real Milvus standalone server, in
the same run and on the same gallery and probes as the FAISS kinds (bench/index_milvus.py: the server
runs only inside a loopback-only network namespace, which the benchmark makes itself as root).

Gallery: the first LFW image of every shared-LFW identity (real, embedded with facevault's own pipeline,
see bench/index_data.py) plus synthetic distractors drawn from a Gaussian fitted to the real embeddings
(so impostor scores look like the model's, not like random unit vectors). Mated probes: the second image
of identities with two or more images. Non-mated probes: fresh synthetic faces.

Reported per index, each beside exact search (faiss.knn over the same array): rank-1 agreement with exact
search on mated probes, recall@10 (mated and non-mated), p50/p99 single-query latency, queries/s at batch
``--probes`` (1,000), resident memory per face (anonymous RSS of a fresh process that loads the saved
index; the IVF-PQ vector file is page cache and is reported as disk bytes instead), build time.
A table goes to stdout and JSON to bench/results/index-N-DIM.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench.index_data import GaussianFaces, impostor_quantiles, lfw_embeddings
from bench.index_milvus import add_arguments, milvus_server, namespace_or_reexec, run_milvus_kind

from facevault.index import FaissIndex

RESULTS = Path(__file__).resolve().parent / "results"
QS = (0.5, 0.9, 0.99, 0.999, 0.9999)


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    return faiss.knn(np.ascontiguousarray(queries), base, k, metric=faiss.METRIC_INNER_PRODUCT)


def latency(fn: Any, queries: np.ndarray) -> dict[str, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None, :])
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def throughput(fn: Any, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    fn(queries)
    return len(queries) / (time.perf_counter() - t0)


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) / k


def build_gallery(args: argparse.Namespace) -> dict[str, Any]:
    real = None if args.no_real else lfw_embeddings(args.model)
    rng = np.random.default_rng(args.seed)
    if real is None:
        # no LFW here: synthetic identities around random centres of an off-centre Gaussian
        centre = rng.standard_normal((1, 128)).astype(np.float32) * 3
        fake = rng.standard_normal((20_000, 128)).astype(np.float32) + centre
        gen = GaussianFaces(fake / np.linalg.norm(fake, axis=1, keepdims=True), args.dim, args.seed)
        gallery_real = gen.sample(args.probes, args.seed + 11)
        noise = rng.standard_normal(gallery_real.shape).astype(np.float32) * 0.02
        probes = gallery_real + noise
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        mate_pos = np.arange(len(gallery_real))
        source = "synthetic only (no LFW embeddings)"
        real_quant = None
    else:
        gen = GaussianFaces(real.vectors, args.dim, args.seed)
        vecs = gen.lift_real(real.vectors)
        labels = real.labels
        first: dict[int, int] = {}
        second: dict[int, int] = {}
        for i, lab in enumerate(labels.tolist()):
            if lab not in first:
                first[lab] = i
            elif lab not in second:
                second[lab] = i
        gallery_idx = np.asarray(sorted(first.values()))
        gallery_real = vecs[gallery_idx]
        pos_of_label = {int(labels[g]): p for p, g in enumerate(gallery_idx)}
        mated = sorted(second.items())[: args.probes]
        probes = vecs[[i for _, i in mated]]
        mate_pos = np.asarray([pos_of_label[lab] for lab, _ in mated])
        source = f"LFW {real.source}: {len(gallery_real)} real gallery faces, {len(probes)} mated probes"
        real_quant = impostor_quantiles(vecs, labels, QS)
    n_syn = max(args.n - len(gallery_real), 0)
    t0 = time.perf_counter()
    base = np.empty((len(gallery_real) + n_syn, args.dim), np.float32)
    base[: len(gallery_real)] = gallery_real
    base[len(gallery_real) :] = gen.sample(n_syn, args.seed + 1)
    gen_s = time.perf_counter() - t0
    syn_quant = impostor_quantiles(base[len(gallery_real) :][:200_000], None, QS)
    nonmated = gen.sample(args.probes, args.seed + 2)
    return {
        "base": base,
        "probes": np.ascontiguousarray(probes, dtype=np.float32),
        "mate_pos": mate_pos,
        "nonmated": nonmated,
        "source": source,
        "generate_s": gen_s,
        "impostor_quantiles": {"q": QS, "real": real_quant, "synthetic": syn_quant},
    }


def measure_memory(path: Path, dim: int, model: str, probes: np.ndarray) -> dict[str, Any]:
    tmp = path.with_name("probes.npy")
    np.save(tmp, probes[:200])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.index_mem", str(path), str(dim), model, str(tmp)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_kind(
    kind: str, data: dict[str, Any], args: argparse.Namespace, exact: dict[str, Any]
) -> dict[str, Any]:
    base, probes, nonmated = data["base"], data["probes"], data["nonmated"]
    work = Path(args.workdir) / f"{kind}-{len(base)}-{args.dim}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "bench.faiss"
    settings: dict[str, Any] = {} if kind == "auto" else {"kind": kind}
    for key in ("nprobe", "rerank", "ef_search", "hnsw_m", "nlist", "pq_m"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    index = FaissIndex(path, args.dim, args.model, **settings)
    t0 = time.perf_counter()
    index.load_arrays(np.arange(len(base), dtype=np.int64), base)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.save()
    save_s = time.perf_counter() - t0
    info = index.info()
    _, ids = index.search(probes, 10)
    _, ids_nm = index.search(nonmated, 10)
    lat = latency(lambda q: index.search(q, 10), probes[: args.single])
    qps = throughput(lambda q: index.search(q, 10), probes)
    mem = measure_memory(path, args.dim, args.model, probes)
    anon = (mem["loaded"]["RssAnon"] - mem["before"]["RssAnon"]) * 1024
    disk = sum(f.stat().st_size for f in work.iterdir() if f.name != "probes.npy")
    res = {
        "kind": info["kind"],
        "params": info["params"],
        "policy": {
            k: info["policy"][k] for k in ("nprobe", "rerank", "min_shortlist", "ef_search", "hnsw_m")
        },
        "build_s": round(build_s, 1),
        "save_s": round(save_s, 1),
        "rank1_agreement": float(np.mean(ids[:, 0] == exact["ids"][:, 0])),
        "rank1_mate_found": float(np.mean(ids[:, 0] == data["mate_pos"])),
        "recall10_mated": recall_at(ids, exact["ids"], 10),
        "recall10_nonmated": recall_at(ids_nm, exact["ids_nm"], 10),
        **lat,
        "qps_batch": round(qps, 1),
        "ram_bytes_per_face_estimate": info["ram_bytes_per_vector"],
        "rss_anon_bytes_per_face": round(anon / len(base), 1),
        "rss_anon_after_search_bytes_per_face": round(
            (mem["after_search"]["RssAnon"] - mem["before"]["RssAnon"]) * 1024 / len(base), 1
        ),
        "disk_bytes_per_face": round(disk / len(base), 1),
    }
    if args.sweep and info["kind"] in ("ivfpq", "hnsw"):
        key = "nprobe" if info["kind"] == "ivfpq" else "ef_search"
        res["sweep"] = []
        for value in (int(v) for v in args.sweep.split(",")):
            index.tune(**{key: value})
            _, ids = index.search(probes, 10)
            _, ids_nm = index.search(nonmated, 10)
            point = {
                key: value,
                "rank1_agreement": float(np.mean(ids[:, 0] == exact["ids"][:, 0])),
                "recall10_mated": recall_at(ids, exact["ids"], 10),
                "recall10_nonmated": recall_at(ids_nm, exact["ids_nm"], 10),
                **latency(lambda q: index.search(q, 10), probes[: args.single]),
                "qps_batch": round(throughput(lambda q: index.search(q, 10), probes), 1),
            }
            res["sweep"].append(point)
            print("  sweep", json.dumps(point), flush=True)
    if not args.keep:
        index.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size (real + synthetic)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--model", default="dlib-resnet-v1")
    ap.add_argument("--kinds", default="auto", help="comma list of auto, flat, hnsw, ivfpq")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--single", type=int, default=300, help="probes timed one by one")
    ap.add_argument("--exact-single", type=int, default=None, help="exact probes timed one by one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--nprobe", type=int)
    ap.add_argument("--rerank", type=int)
    ap.add_argument("--ef-search", dest="ef_search", type=int)
    ap.add_argument("--hnsw-m", dest="hnsw_m", type=int)
    ap.add_argument("--nlist", type=int)
    ap.add_argument("--pq-m", dest="pq_m", type=int)
    ap.add_argument("--sweep", default="", help="nprobe (IVF-PQ) or efSearch (HNSW) values to also try")
    ap.add_argument("--workdir", default=str(RESULTS / "work"))
    ap.add_argument("--keep", action="store_true", help="keep the built index files")
    ap.add_argument("--out", default=None)
    add_arguments(ap)
    args = ap.parse_args()
    if args.backend == "milvus-server":
        namespace_or_reexec(sys.argv[1:])

    import faiss

    t0 = time.perf_counter()
    data = build_gallery(args)
    base = data["base"]
    print(f"gallery {base.shape} ({data['source']}), generated in {data['generate_s']:.1f} s", flush=True)
    q = data["impostor_quantiles"]
    print("impostor score quantiles", q["q"], "\n  real     ", q["real"], "\n  synthetic", q["synthetic"])

    _, ex_ids = exact_knn(base, data["probes"], 10)
    _, ex_ids_nm = exact_knn(base, data["nonmated"], 10)
    n_single = args.exact_single or max(20, min(args.single, int(3e8 // (len(base) * args.dim) + 20)))
    exact = {
        "ids": ex_ids,
        "ids_nm": ex_ids_nm,
        **latency(lambda x: exact_knn(base, x, 10), data["probes"][:n_single]),
        "qps_batch": round(throughput(lambda x: exact_knn(base, x, 10), data["probes"]), 1),
        "rank1_mate_found": float(np.mean(ex_ids[:, 0] == data["mate_pos"])),
        "ram_bytes_per_face": 4 * args.dim,
        "single_timed": n_single,
    }
    print(
        f"exact: p50 {exact['p50_ms']:.2f} ms, {exact['qps_batch']:.0f} q/s, "
        f"mate at rank 1 {exact['rank1_mate_found']:.3f}",
        flush=True,
    )

    results = {}
    for kind in args.kinds.split(","):
        results[kind] = run_kind(kind, data, args, exact)
        print(kind, json.dumps(results[kind]), flush=True)
    if args.backend == "milvus-server":
        metrics = {"latency": latency, "throughput": throughput, "recall_at": recall_at}
        for mkind in args.milvus_kinds.split(","):
            key = f"milvus-{mkind}"
            try:
                with milvus_server() as (uri, state_file):  # a fresh server per type (memory)
                    results[key] = run_milvus_kind(mkind, data, args, exact, uri, state_file, metrics)
            except Exception as exc:  # e.g. an index build past --milvus-build-timeout: keep the rest
                print(f"{key} failed: {exc!r}", flush=True)
                continue
            print(key, json.dumps(results[key]), flush=True)

    rows = [
        ("exact (faiss.knn)", "1.000", "1.000", "1.000", f"{exact['p50_ms']:.2f}", f"{exact['p99_ms']:.2f}",
         f"{exact['qps_batch']:.0f}", f"{exact['ram_bytes_per_face']}", "-")
    ]  # fmt: skip
    for kind, r in results.items():
        rows.append(
            (
                f"{kind} -> {r['kind']}",
                f"{r['rank1_agreement']:.4f}",
                f"{r['recall10_mated']:.4f}",
                f"{r['recall10_nonmated']:.4f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['qps_batch']:.0f}",
                f"{r['rss_anon_bytes_per_face']:.1f}",
                f"{r['build_s']:.0f}",
            )
        )
    head = (
        "index",
        "rank1 agr",
        "R@10 mated",
        "R@10 non-m",
        "p50 ms",
        "p99 ms",
        "q/s@1000",
        "B/face",
        "build s",
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    print()
    for row in (head, *rows):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))

    stem = "index-milvus-server" if args.backend == "milvus-server" else "index"
    out = Path(args.out or RESULTS / f"{stem}-{len(base)}-{args.dim}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python -m bench.index " + " ".join(sys.argv[1:]),
        "n": len(base),
        "dim": args.dim,
        "model": args.model,
        "probes": len(data["probes"]),
        "source": data["source"],
        "impostor_quantiles": q,
        "machine": {
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
        },
        "exact": {k: v for k, v in exact.items() if k not in ("ids", "ids_nm")},
        "indexes": results,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
