"""The Milvus-server side of bench/index.py (``--backend milvus-server``): facevault's Milvus backend on a
real Milvus standalone server (PyPI ``milvus``, 2.3.x), timed like the FAISS kinds in the same run.

The server runs only inside a loopback-only network namespace: ``namespace_or_reexec`` re-runs the
benchmark under ``unshare --net`` (root) unless it already runs in one, and ``milvus_server`` starts the
server there with tests/milvus_server/server.py (every component on 127.0.0.1), or uses the one named by
FACEVAULT_TEST_MILVUS_URI / FACEVAULT_TEST_MILVUS_STATE (tests/milvus_server/run.sh).

Measured per Milvus index type: build time (insert, flush, and the server's background index build until
every row is indexed), rank-1 agreement and recall@10 against exact search, p50/p99 single-query latency
and batch queries/s through facevault's backend (quantized types re-scored exactly from the stored
vectors), with Strong consistency (facevault's default) and again with Bounded, and the server
process's resident memory (VmRSS) before the collection is made and after the searches; each type gets
a fresh server when the benchmark starts its own, so one type's memory is not the next one's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.milvus_server import server as ms  # noqa: E402

# Build and search options per type; IVF lists ~ sqrt(n), PQ with 4-d sub-vectors.
KINDS = {
    "IVF_SQ8": lambda n, a: f"index=IVF_SQ8&nlist={a.milvus_nlist or _nlist(n)}&nprobe={a.milvus_nprobe}",
    "IVF_PQ": lambda n, a: (
        f"index=IVF_PQ&nlist={a.milvus_nlist or _nlist(n)}&nprobe={a.milvus_nprobe}&pq_m={a.dim // 4}"
    ),
    "HNSW": lambda n, a: f"index=HNSW&M=16&ef_construction={a.milvus_ef_construction}&ef={a.milvus_ef}",
    "IVF_FLAT": lambda n, a: f"index=IVF_FLAT&nlist={a.milvus_nlist or _nlist(n)}&nprobe={a.milvus_nprobe}",
}


def _nlist(n: int) -> int:
    return int(min(4096, max(16, 2 ** round(np.log2(max(n, 1) ** 0.5)))))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--backend", default="faiss", choices=("faiss", "milvus-server"))
    ap.add_argument("--milvus-kinds", default="IVF_SQ8,HNSW", help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--milvus-nlist", type=int, default=None, help="IVF lists (default ~sqrt(n))")
    ap.add_argument("--milvus-nprobe", type=int, default=32)
    ap.add_argument("--milvus-ef", type=int, default=64)
    ap.add_argument("--milvus-ef-construction", type=int, default=100)
    ap.add_argument("--milvus-build-timeout", type=float, default=3600.0)


def namespace_or_reexec(argv: list[str]) -> None:
    """Return when the server may be started here (a loopback-only namespace, or a server was given);
    otherwise re-run this command under ``unshare --net`` (root only)."""
    if os.environ.get(ms.URI_ENV) and os.environ.get(ms.STATE_ENV):
        return
    if os.environ.get("FACEVAULT_BENCH_IN_NETNS"):  # the re-run: a fresh namespace, lo still down
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        if ms.loopback_only() is None:
            return
        raise SystemExit("inside unshare --net but the namespace is not loopback-only; refusing")
    if ms.loopback_only() is None:
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise SystemExit(
            "--backend milvus-server needs root and unshare: the server runs only in a "
            "loopback-only network namespace (or run it through tests/milvus_server/run.sh)"
        )
    os.environ["FACEVAULT_BENCH_IN_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, "-m", "bench.index", *argv])


@contextmanager
def milvus_server() -> Iterator[tuple[str, Path]]:
    """(facevault URL of the server, its state file)."""
    if os.environ.get(ms.URI_ENV) and os.environ.get(ms.STATE_ENV):
        yield os.environ[ms.URI_ENV], Path(os.environ[ms.STATE_ENV])
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    base = Path(tempfile.mkdtemp(prefix="facevault-bench-milvus-"))
    state_file = base / "state.json"
    try:
        state = ms.start(base / "server", state_file)
        print(f"milvus-server: pid {state.pid} at {state.uri} (loopback-only namespace)", flush=True)
        yield state.uri, state_file
    finally:
        if state_file.exists():
            ms.stop(state_file)
        shutil.rmtree(base, ignore_errors=True)


def run_milvus_kind(
    kind: str,
    data: dict[str, Any],
    args: argparse.Namespace,
    exact: dict[str, Any],
    uri: str,
    state_file: Path,
    metrics: dict[str, Callable[..., Any]],
) -> dict[str, Any]:
    from facevault.index.milvus_index import IndexUnavailableError, MilvusIndex

    base, probes, nonmated = data["base"], data["probes"], data["nonmated"]
    n = len(base)
    options = KINDS[kind](n, args)
    pid = ms.State.load(state_file).pid
    rss_before = ms.rss_bytes(pid)
    url = f"{uri}/bench?{options}&timeout=600"
    idx = MilvusIndex(url, f"bench_{kind.lower()}_{n}", args.dim, args.model)
    idx.reset()
    t0 = time.perf_counter()
    idx.add(np.arange(n, dtype=np.int64), base)
    insert_s = time.perf_counter() - t0
    idx.save()  # flush: seal the segments so the server indexes them
    flush_s = time.perf_counter() - t0 - insert_s
    idx.wait_built(rows=n, timeout=args.milvus_build_timeout, settled=False)
    build_s = time.perf_counter() - t0  # every row is in an indexed segment
    try:  # and the re-index of segments merged by compaction is done (2.3 may report it for long)
        described = idx.wait_built(rows=n, timeout=300)
        settled_s: float | None = time.perf_counter() - t0
    except IndexUnavailableError:
        described, settled_s = idx.client.describe_index(idx.name, "vector"), None
    assert len(idx) == n, (len(idx), n)
    _, ids = idx.search(probes, 10)
    _, ids_nm = idx.search(nonmated, 10)
    lat = metrics["latency"](lambda q: idx.search(q, 10), probes[: args.single])
    qps = metrics["throughput"](lambda q: idx.search(q, 10), probes)
    rss_after = ms.rss_bytes(pid)
    # the same collection searched with Bounded consistency: no wait for the server's time tick
    bounded = MilvusIndex(f"{url}&consistency=Bounded", idx.name, args.dim, args.model)
    lat_b = metrics["latency"](lambda q: bounded.search(q, 10), probes[: args.single])
    qps_b = metrics["throughput"](lambda q: bounded.search(q, 10), probes)
    recall_at = metrics["recall_at"]
    res = {
        "kind": f"milvus {kind}",
        "url_options": options,
        "params": {**idx.build_params, **idx.search_params, "rerank": idx.info()["rerank"]},
        "index_state": str(described.get("state")),
        "indexed_rows": described.get("indexed_rows"),
        "insert_s": round(insert_s, 1),
        "flush_s": round(flush_s, 1),
        "build_s": round(build_s, 1),
        "settled_s": None if settled_s is None else round(settled_s, 1),
        "rank1_agreement": float(np.mean(ids[:, 0] == exact["ids"][:, 0])),
        "rank1_mate_found": float(np.mean(ids[:, 0] == data["mate_pos"])),
        "recall10_mated": recall_at(ids, exact["ids"], 10),
        "recall10_nonmated": recall_at(ids_nm, exact["ids_nm"], 10),
        **lat,
        "qps_batch": round(qps, 1),
        "bounded_p50_ms": lat_b["p50_ms"],
        "bounded_p99_ms": lat_b["p99_ms"],
        "bounded_qps_batch": round(qps_b, 1),
        "server_rss_before_bytes": rss_before,
        "server_rss_after_bytes": rss_after,
        "rss_anon_bytes_per_face": round((rss_after - rss_before) / n, 1),
    }
    if args.sweep:  # the same build at other nprobe (IVF) or ef (HNSW) values
        key = "ef" if kind == "HNSW" else "nprobe"
        res["sweep"] = []
        for value in (int(v) for v in args.sweep.split(",")):
            idx.tune(**{key: value})
            bounded.tune(**{key: value})
            _, ids = idx.search(probes, 10)
            _, ids_nm = idx.search(nonmated, 10)
            point = {
                key: value,
                "rank1_agreement": float(np.mean(ids[:, 0] == exact["ids"][:, 0])),
                "recall10_mated": recall_at(ids, exact["ids"], 10),
                "recall10_nonmated": recall_at(ids_nm, exact["ids_nm"], 10),
                **{f"bounded_{k}": v for k, v in metrics["latency"](
                    lambda q: bounded.search(q, 10), probes[: args.single]).items()},
                "bounded_qps_batch": round(metrics["throughput"](lambda q: bounded.search(q, 10), probes), 1),
            }  # fmt: skip
            res["sweep"].append(point)
            print("  milvus sweep", json.dumps(point), flush=True)
    idx.destroy()
    return res
