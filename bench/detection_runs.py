"""Running one detector over many images in worker processes: detections, and timed passes.

Workers are started with ``spawn`` (no ONNX session or dlib object is inherited from the parent) and
``FACEVAULT_THREADS`` set before anything is built. Images are decoded with ``facevault.imaging`` as
enrollment does; the decode is never timed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from bench.detection_detectors import Choice, detect_boxes, set_threads

from facevault import imaging

_worker: dict[str, Any] = {}

Detections = tuple[list[tuple[float, ...]], list[float]]


def _init(choice: Choice) -> None:
    os.environ["FACEVAULT_THREADS"] = str(choice.threads)
    _worker["det"] = choice.build()


def _detect_path(path: str) -> Detections:
    return detect_boxes(_worker["det"], imaging.load_image(path).pixels)


def _pool(choice: Choice, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(choice,)
    )


def detect_all(choice: Choice, paths: Sequence[str], workers: int) -> list[Detections]:
    """(boxes, scores) for every image, in order."""
    with _pool(choice, workers) as pool:
        return list(pool.map(_detect_path, paths, chunksize=8))


def _time_paths(paths: Sequence[str]) -> list[float]:
    """Seconds of ``detect`` per image, after one untimed warm-up call (session creation, caches)."""
    det = _worker["det"]
    secs = []
    for n, path in enumerate(paths):
        pixels = imaging.load_image(path).pixels
        if n == 0:
            det.detect(pixels)
        t = time.perf_counter()
        det.detect(pixels)
        secs.append(time.perf_counter() - t)
    return secs


def _cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot, all cores (/proc/stat): busy is
    user + nice + system + irq + softirq; stolen is time the hypervisor gave to other machines."""
    with open("/proc/stat", encoding="ascii") as fh:
        f = [int(v) for v in fh.readline().split()[1:]] + [0] * 8
    tick = os.sysconf("SC_CLK_TCK")
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / tick, f[7] / tick


def _our_seconds() -> float:
    """CPU seconds of this process and its finished children (the pool workers, once shut down)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(choice: Choice, paths: Sequence[str], threads: int) -> dict[str, Any]:
    """ms per image with ``threads`` threads. ONNX detectors: one process with that many intra-op
    threads (the figure is the latency of one call). Single-threaded detectors (dlib): that many worker
    processes on interleaved shares of the images, and the figure is the detector time of all workers
    divided by the workers and the images (cost per image on that many busy cores; per-call latency
    is given too)."""
    intra = set_threads(Choice(choice.name, choice.threshold).build(), threads)
    workers, per = (1, threads) if intra else (threads, 1)
    (busy0, steal0), ours0, t0 = _cpu_seconds(), _our_seconds(), time.perf_counter()
    with _pool(Choice(choice.name, choice.threshold, per), workers) as pool:
        shares = [list(paths[i::workers]) for i in range(workers)]
        secs = [s for part in pool.map(_time_paths, shares) for s in part]
    wall = time.perf_counter() - t0
    busy1, steal1 = _cpu_seconds()
    others = max(0.0, (busy1 - busy0) - (_our_seconds() - ours0))
    cores = os.cpu_count() or 1
    arr = np.asarray(secs)
    return {
        "threads": threads,
        "mode": "onnxruntime intra-op threads, one process" if intra else f"{workers} worker process(es)",
        "images": len(secs),
        "ms_per_image": float(arr.sum() / workers / len(arr) * 1000) if len(arr) else 0.0,
        "latency_ms_mean": float(arr.mean() * 1000) if len(arr) else 0.0,
        "latency_ms_median": float(np.median(arr) * 1000) if len(arr) else 0.0,
        "wall_s": round(wall, 1),
        "cores": cores,
        # CPU time used by other processes on the machine during this pass, as a share of all cores:
        # above ~0.1 the figure was taken under load and is provisional.
        "others_cpu_share": round(others / (wall * cores), 3) if wall > 0 else 0.0,
        "stolen_cpu_share": round((steal1 - steal0) / (wall * cores), 3) if wall > 0 else 0.0,
    }
