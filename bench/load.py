"""Load check of the HTTP server (issue 11, findings 13 and 14), on loopback only.

The script makes a temporary vault (one collection, a few shared-LFW people enrolled), starts
``facevault serve`` on 127.0.0.1 (a real uvicorn) and measures, bounded in count and time:

1. **Flood of invalid keys.** One valid searcher sends searches one after the other: first alone
   (``--phase-s`` seconds), then while ``--flooders`` clients send requests with random, well-formed
   but unknown keys as fast as the server answers them (each on its own keep-alive connection, from
   the searcher's own address 127.0.0.1, ignoring Retry-After), then alone again. The searcher's median
   latency during the flood is compared with its median alone (both alone phases together), same run.
   Run for each server configuration in ``--configs``: ``default`` (as shipped), ``no-delay``
   (429 answered at once: ``FACEVAULT_API_AUTH_FAIL_DELAY_S=0``) and ``no-limit`` (failed
   authentications not limited: the behaviour before the change). The per-key limit is raised for
   this bench (``KEY_LIMIT_ENV``): one searcher alone makes more than 600 searches a minute.
2. **Overload.** A server with a small pool (2 threads, 2 waiting) gets ``--overload-clients``
   concurrent searchers for ``--overload-s`` seconds: every request must be answered (200 or 503,
   never a hang past the client timeout), and each 503 within 100 ms.

Criteria: the searcher's p50 during the flood at most 20% above its p50 alone (``default``), and the
slowest 503 under overload below 100 ms with no request left unanswered.

    .venv/bin/python -m bench.load [--phase-s 30] [--flooders 8] [--configs default,no-delay,no-limit]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
PEOPLE = {"Colin_Powell": (1, 2, 3), "Tony_Blair": (1, 2, 3), "Hugo_Chavez": (1, 2, 3)}
PROBE = ("Colin_Powell", 4)  # not enrolled: a real search for a real person
# The searcher alone makes more than the default 600 searches a minute its key may: the per-key limit
# is not what is measured here, so it is raised for every server of this bench.
KEY_LIMIT_ENV = {"FACEVAULT_API_RATE_PER_MINUTE": "1000000", "FACEVAULT_API_RATE_BURST": "100000"}
CONFIGS = {
    "default": {},
    "no-delay": {"FACEVAULT_API_AUTH_FAIL_DELAY_S": "0"},
    "no-limit": {
        "FACEVAULT_API_AUTH_FAIL_BURST": "1000000000",
        "FACEVAULT_API_AUTH_FAIL_PER_MINUTE": "1000000000",
    },
}
OVERLOAD_ENV = {"FACEVAULT_API_WORK_THREADS": "2", "FACEVAULT_API_WORK_QUEUE": "2", "FACEVAULT_THREADS": "1"}
CLIENT_TIMEOUT_S = 60.0


def lfw(data: Path, name: str, n: int) -> Path:
    return data / "lfw" / "lfw-deepfunneled" / name / f"{name}_{n:04d}.jpg"


def make_vault(home: Path, data: Path) -> str:
    """The gallery, and a searcher key (returned)."""
    import facevault

    with facevault.open(str(home), create=True) as v:
        v.create_collection("g")
        for person, numbers in PEOPLE.items():
            v.add_subject("g", person.replace("_", " "), purpose="load test", consent_text="agreed (test)")
            outcomes = v.enroll("g", person.replace("_", " "), [lfw(data, person, n) for n in numbers])
            assert all(o.ok for o in outcomes), outcomes
        return str(v.create_api_key("searcher", "load-test searcher")[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def server(home: Path, extra_env: dict[str, str]) -> Any:
    """``facevault serve`` on 127.0.0.1 in a child process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "FACEVAULT_HOME": str(home), **KEY_LIMIT_ENV, **extra_env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facevault.cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def search_once(
    client: httpx.Client, key: str, probe: bytes, *, retry_after: bool = False, body: bool = False
) -> Any:
    """(status, seconds), then the reply's Retry-After in seconds (``retry_after``) or its text."""
    t0 = time.perf_counter()
    r = client.post(
        "/api/v1/collections/g/search",
        data={"purpose": "load test"},
        files={"image": ("probe.jpg", probe, "image/jpeg")},
        headers={"Authorization": f"Bearer {key}"},
    )
    took = time.perf_counter() - t0
    if body:
        return r.status_code, took, r.text
    if not retry_after:
        return r.status_code, took
    return r.status_code, took, float(r.headers.get("retry-after", "0") or 0)


def searcher(base: str, key: str, probe: bytes, seconds: float) -> list[float]:
    """Searches one after the other for ``seconds``; the latencies of the answered ones (all 200)."""
    out: list[float] = []
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT_S) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status, took, text = search_once(c, key, probe, body=True)
            if status != 200:
                raise SystemExit(f"the valid searcher got {status}: {text[:300]}")
            out.append(took)
    return out


# ---- the flood: raw keep-alive HTTP/1.1, so that the clients cost little CPU themselves --------------
def _flood_client(port: int, until: float, counts: dict[str, int], lock: threading.Lock) -> None:
    sock: socket.socket | None = None
    buf = b""
    local: dict[str, int] = {}
    while time.monotonic() < until:
        if sock is None:
            sock = socket.create_connection((HOST, port), timeout=10)
            buf = b""
        key = f"fvk_{secrets.token_hex(4)}_{secrets.token_urlsafe(30)}"
        sock.sendall(f"GET /api/v1/me HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {key}\r\n\r\n".encode("ascii"))
        try:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ")[1].decode()
            length = next(
                (
                    int(v)
                    for n, _, v in (ln.partition(b":") for ln in lines[1:])
                    if n.lower() == b"content-length"
                ),
                0,
            )
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            buf = buf[length:]
            local[status] = local.get(status, 0) + 1
            if any(ln.lower() == b"connection: close" for ln in lines[1:]):
                sock.close()
                sock = None
        except (OSError, ConnectionError):
            local["dropped"] = local.get("dropped", 0) + 1
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    with lock:
        for k, v in local.items():
            counts[k] = counts.get(k, 0) + v


def flood_process(port: int, clients: int, seconds: float, result: Any) -> None:
    """``clients`` flooding threads in one process (not the searcher's), for ``seconds``."""
    until = time.monotonic() + seconds
    counts: dict[str, int] = {}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_flood_client, args=(port, until, counts, lock), daemon=True)
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    result.put(counts)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_flood(home: Path, key: str, probe: bytes, config: str, args: argparse.Namespace) -> dict[str, Any]:
    with server(home, CONFIGS[config]) as base:
        port = int(base.rsplit(":", 1)[1])
        searcher(base, key, probe, 3)  # warm-up: models loaded, index read, the key known
        alone = searcher(base, key, probe, args.phase_s / 2)
        ctx = mp.get_context("spawn")
        result = ctx.Queue()
        flood = ctx.Process(target=flood_process, args=(port, args.flooders, args.phase_s, result))
        flood.start()
        during = searcher(base, key, probe, args.phase_s)
        counts = result.get(timeout=args.phase_s + 60)
        flood.join(30)
        alone += searcher(base, key, probe, args.phase_s / 2)
    p50_alone, p50_flood = statistics.median(alone), statistics.median(during)
    return {
        "config": config,
        "env": CONFIGS[config],
        "searches_alone": len(alone),
        "searches_during_flood": len(during),
        "p50_alone_s": round(p50_alone, 4),
        "p50_flood_s": round(p50_flood, 4),
        "p90_alone_s": round(percentile(alone, 90), 4),
        "p90_flood_s": round(percentile(during, 90), 4),
        "p50_increase": round(p50_flood / p50_alone - 1.0, 4),
        "flood_requests": sum(counts.values()),
        "flood_per_s": round(sum(counts.values()) / args.phase_s, 1),
        "flood_answers": counts,
    }


def overload_process(base: str, key: str, probe: bytes, threads: int, seconds: float, result: Any) -> None:
    """``threads`` searchers in one process, each searching again at once after a 200 and after the
    Retry-After of a 503, for ``seconds``; puts (latencies by status, unanswered)."""
    lat: dict[str, list[float]] = {}
    unanswered = 0
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def client() -> None:
        nonlocal unanswered
        with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT_S) as c:
            while time.monotonic() < until:
                try:
                    status, took, retry = search_once(c, key, probe, retry_after=True)
                except httpx.HTTPError:
                    with lock:
                        unanswered += 1
                    continue
                with lock:
                    lat.setdefault(str(status), []).append(took)
                if status == 503:
                    time.sleep(retry)  # honours Retry-After, as a client should

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + CLIENT_TIMEOUT_S + 30)
    result.put((lat, unanswered))


def run_overload(home: Path, key: str, probe: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """More concurrent searchers than a small pool takes, spread over 4 client processes (so that the
    clients' own Python does not delay the replies they time)."""
    procs = 4
    per = max(1, args.overload_clients // procs)
    lat: dict[str, list[float]] = {}
    unanswered = 0
    with server(home, OVERLOAD_ENV) as base:
        searcher(base, key, probe, 3)
        ctx = mp.get_context("spawn")
        result = ctx.Queue()
        clients = [
            ctx.Process(target=overload_process, args=(base, key, probe, per, args.overload_s, result))
            for _ in range(procs)
        ]
        for p in clients:
            p.start()
        for _ in clients:
            got, lost = result.get(timeout=args.overload_s + CLIENT_TIMEOUT_S + 60)
            unanswered += lost
            for status, xs in got.items():
                lat.setdefault(status, []).extend(xs)
        for p in clients:
            p.join(30)
    busy = lat.get("503", [])
    return {
        "env": OVERLOAD_ENV,
        "clients": per * procs,
        "seconds": args.overload_s,
        "answers": {k: len(v) for k, v in sorted(lat.items())},
        "unanswered": unanswered,
        "p50_200_s": round(statistics.median(lat["200"]), 4) if lat.get("200") else None,
        "p50_503_s": round(statistics.median(busy), 4) if busy else None,
        "p99_503_s": round(percentile(busy, 99), 4) if busy else None,
        "max_503_s": round(max(busy), 4) if busy else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--phase-s", type=float, default=30.0, help="seconds of flood (and of searching alone)")
    ap.add_argument("--flooders", type=int, default=8)
    ap.add_argument("--configs", default="default,no-delay,no-limit")
    ap.add_argument("--overload-clients", type=int, default=16)
    ap.add_argument("--overload-s", type=float, default=20.0)
    ap.add_argument("--out", default="bench/results/load.json")
    args = ap.parse_args()
    data = Path(args.data).resolve()
    if not lfw(data, *PROBE).is_file():
        raise SystemExit(f"no shared LFW data under {data} (set --data or FACEVAULT_TEST_DATA)")
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    probe = lfw(data, *PROBE).read_bytes()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "args": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="facevault-load-") as tmp:
        home = Path(tmp) / "vault"
        key = make_vault(home, data)
        results["flood"] = []
        for config in configs:
            print(f"flood, server {config} ...", flush=True)
            results["flood"].append(run_flood(home, key, probe, config, args))
        print("overload ...", flush=True)
        results["overload"] = run_overload(home, key, probe, args) if args.overload_s > 0 else None

    print(f"\nflood: {args.flooders} clients with invalid keys for {args.phase_s:g} s, one valid searcher")
    print("| server | searches alone / during | p50 alone | p50 flood | increase | flood req/s | answers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results["flood"]:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["flood_answers"].items()))
        counts = f"{r['searches_alone']} / {r['searches_during_flood']}"
        p50s = f"{r['p50_alone_s']:.3f} s | {r['p50_flood_s']:.3f} s"
        rise = f"{100 * r['p50_increase']:+.1f}%"
        print(f"| {r['config']} | {counts} | {p50s} | {rise} | {r['flood_per_s']:g} | {answers} |")
    o = results["overload"]
    if o:
        print(
            f"\noverload: {o['clients']} concurrent searchers for {o['seconds']:g} s, 2 threads + 2 waiting"
        )
        print(
            f"answers {o['answers']}, unanswered {o['unanswered']}; 503 p50 {o['p50_503_s']} s, "
            f"p99 {o['p99_503_s']} s, max {o['max_503_s']} s; 200 p50 {o['p50_200_s']} s"
        )
    default = next((r for r in results["flood"] if r["config"] == "default"), None)
    checks = {}
    if default is not None:
        checks["flood_p50_within_20pct"] = default["p50_increase"] <= 0.20
    if o:
        checks["overload_503_within_100ms"] = o["max_503_s"] is not None and o["max_503_s"] < 0.100
        checks["overload_never_hangs"] = o["unanswered"] == 0
    results["checks"] = checks
    print("\nchecks:", ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
