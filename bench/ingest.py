"""Ingest speed: faces per second of the whole pipeline against the ``face_recognition`` package, in the
same run on the same images, plus embedding-only latency and ``facevault --help`` start-up time.

facevault: decode (``imaging.load_image``) -> detect (the default pack's detector as enrollment runs
it: HOG first on a portrait, the MMOD CNN when HOG finds nothing; 5 landmarks) -> align -> quality ->
embed (dlib ResNet in ONNX Runtime, flip-averaged as by default: two forward passes per face) in
``map_with_pipeline`` worker processes (one per core, 1 ONNX thread each), then store: one subject per
LFW identity, every face as an image + sample row (batched transactions) and the FAISS index rebuilt
from the store, in a temporary vault.

face_recognition: ``load_image_file`` + ``face_encodings`` (HOG, upsample 1, 5-point model, 1 jitter;
dlib's own ResNet from the dlib-bin wheel) in a ``multiprocessing.Pool`` of the same size. Nothing is
stored. Both sides include their worker start-up and model loading in the wall time.

The two run alternately (``--rounds``, default 2) so a neighbour's load on a shared machine hits both.

    .venv/bin/python -m bench.ingest [--images 1000] [--workers 2] [--rounds 2] [--skip-embed]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facevault import imaging
from facevault.config import load_settings

MODEL = "dlib-resnet-v1"


def sample_paths(data: Path, n: int) -> list[str]:
    """``n`` images spread evenly over the sorted shared LFW folder (deterministic)."""
    allp = sorted(str(p) for p in (data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    if not allp:
        raise SystemExit(f"no LFW images under {data}")
    step = len(allp) / n
    return [allp[int(i * step)] for i in range(min(n, len(allp)))]


# ---- facevault ----------------------------------------------------------------------------------------
_fv: dict[str, Any] = {}


def _on_miss_pack() -> Any:
    from bench.detection import UpsampleOnMissHog

    from facevault.models import ModelPack
    from facevault.models.dlib.builtin import dlib_resnet_v1

    base = dlib_resnet_v1()
    return ModelPack(
        base.model_id, UpsampleOnMissHog(), base.embedder, base.description + ", upsample on miss"
    )


def use_detector(variant: str) -> None:
    """Swap the default pack's detector for a variant (same weights, same model id): ``default`` is
    the pack's detector as shipped, ``on-miss`` upsamples only when the image's own scale finds no face."""
    from facevault.models import register_pack
    from facevault.models.dlib.builtin import dlib_resnet_v1

    register_pack(MODEL, _on_miss_pack if variant.startswith("on-miss") else dlib_resnet_v1)


def _fv_init(home: str, variant: str) -> None:
    """One vault per worker process, as separate `facevault enroll` processes on one vault would have."""
    import facevault

    os.environ["FACEVAULT_THREADS"] = "1"  # one process per core
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    use_detector(variant)
    overrides: dict[str, Any] = {"tta": "none"} if variant.endswith("-noflip") else {}
    vault = facevault.open(home, **overrides)
    pipe = vault.pipeline(MODEL)
    analyze = pipe.analyze
    counter = [0]

    def counted(pixels: np.ndarray, *args: Any, **kwargs: Any) -> Any:  # counts the faces embedded
        faces = analyze(pixels, *args, **kwargs)
        counter[0] += len(faces)
        return faces

    pipe.analyze = counted  # type: ignore[method-assign]
    _fv.update(vault=vault, counter=counter)


def _fv_partition(
    home: str, variant: str, collection: str, jobs: list[tuple[str, list[str]]], queue: Any
) -> None:
    _fv_init(home, variant)
    out: dict[str, Any] = {"images": 0, "faces": 0, "enrolled": 0, "reasons": []}
    for who, files in jobs:
        outcomes = _fv["vault"].enroll(collection, who, files, largest=True)
        out["images"] += len(files)
        out["enrolled"] += sum(o.ok for o in outcomes)
        out["reasons"] += [o.reason for o in outcomes if not o.ok]
    out["faces"] = _fv["counter"][0]
    _fv["vault"].close()
    queue.put(out)


def run_facevault(paths: list[str], workers: int, variant: str = "default") -> dict[str, Any]:
    """The real enrollment use case (``Vault.enroll``: decode, detect, align, quality gate, embed,
    conflict check, store + audit + index) for one subject per LFW identity. The identities are split
    over ``workers`` processes; each opens the same temporary vault and enrolls into its own collection
    (processes sharing one collection's index rebuild it after every concurrent write: see the report)."""
    import facevault

    use_detector(variant)
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(Path(p).parent.name, []).append(p)
    jobs = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    parts = [jobs[i::workers] for i in range(workers)]
    names = [f"lfw-{i}" for i in range(workers)]
    with tempfile.TemporaryDirectory(prefix="fv-ingest-") as tmp:
        with facevault.open(tmp, create=True) as vault:
            for name, part in zip(names, parts, strict=True):  # consent bookkeeping, not timed
                vault.create_collection(name)
                for who, _ in part:
                    vault.add_subject(name, who, purpose="benchmark", consent_text="bench")
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        t0 = time.perf_counter()
        procs = [
            ctx.Process(target=_fv_partition, args=(tmp, variant, name, part, queue))
            for name, part in zip(names, parts, strict=True)
        ]
        for pr in procs:
            pr.start()
        results = [queue.get() for _ in procs]
        for pr in procs:
            pr.join()
        wall = time.perf_counter() - t0
        with facevault.open(tmp) as vault:
            indexed = sum(int(vault.index_info(name)["count"]) for name in names)
    reasons: dict[str, int] = {}
    for r in results:
        for reason in r["reasons"]:
            reasons[reason] = reasons.get(reason, 0) + 1
    faces = sum(r["faces"] for r in results)
    return {
        "images": sum(r["images"] for r in results),
        "faces": faces,
        "enrolled": sum(r["enrolled"] for r in results),
        "indexed": indexed,
        "rejections": reasons,
        "wall_s": wall,
        "faces_per_s": faces / wall,
    }


# ---- face_recognition --------------------------------------------------------------------------------
def _fr_encode(path: str) -> int:
    import face_recognition

    img = face_recognition.load_image_file(path)
    return len(face_recognition.face_encodings(img))


def _fr_init() -> None:
    import face_recognition  # noqa: F401  (loads its models, as a real user's process would)


def run_face_recognition(paths: list[str], workers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_fr_init) as pool:
        counts = pool.map(_fr_encode, paths, chunksize=8)
    wall = time.perf_counter() - t0
    faces = int(sum(counts))
    return {"images": len(paths), "faces": faces, "wall_s": wall, "faces_per_s": faces / wall}


# ---- embedding only ----------------------------------------------------------------------------------
def embedding_only(paths: list[str], n_chips: int = 64, repeats: int = 3) -> list[dict[str, Any]]:
    from facevault.models import get_pack
    from facevault.models.dlib.models import DlibResnetEmbedder, DlibResnetOnnxEmbedder

    pack = get_pack(MODEL)
    chips = []
    for p in paths:
        px = imaging.load_image(p).pixels
        faces = pack.detector.detect(px)
        if faces:
            chips.append(pack.embedder.align(px, faces[0]))
        if len(chips) >= n_chips:
            break
    rows = []

    def timed(name: str, threads: int, batch: int, fn: Any, chip_set: list[np.ndarray], reps: int) -> None:
        fn(chip_set[:batch])  # warm-up
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            for start in range(0, len(chip_set), batch):
                fn(chip_set[start : start + batch])
            best = min(best, time.perf_counter() - t)
        rows.append(
            {"runtime": name, "threads": threads, "batch": batch, "ms_per_face": 1000 * best / len(chip_set)}
        )

    for threads in (1, 2):
        emb = DlibResnetOnnxEmbedder(threads=threads, batch_size=32)
        for batch in (1, 32):
            timed("onnxruntime", threads, batch, emb.embed_chips, chips, repeats)
    ref = DlibResnetEmbedder()  # dlib-bin is slow: 16 chips, best of 2
    for batch in (1, 16):
        timed("dlib compute_face_descriptor", 1, batch, ref.embed_chips, chips[:16], 2)
    return rows


def help_time(runs: int = 5) -> dict[str, float]:
    exe = Path(sys.executable).parent / "facevault"
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "facevault.cli", "--help"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--detectors",
        default="default",
        help="comma-separated facevault detector variants: default (the pack's detector as shipped), "
        "on-miss (upsample only when the image's own scale finds no face); a -noflip suffix turns "
        "flip test-time augmentation off (one forward pass per face instead of two)",
    )
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-face-recognition", action="store_true")
    ap.add_argument("--out", default="bench/results/ingest.json")
    args = ap.parse_args()
    paths = sample_paths(Path(args.data), args.images)
    settings = load_settings()
    variants = [v.strip() for v in args.detectors.split(",") if v.strip()]
    if args.workers > 1:
        # One thread per worker process, for ONNX Runtime and for FAISS's OpenMP (whose spinning threads
        # otherwise cost ~10 ms per enrollment search on a busy 2-core machine). pipeline._init_worker
        # means to do the same, but a pack or FAISS already initialised in the parent keeps the parent's
        # setting in forked workers: see docs/BENCH-MODELS.md.
        os.environ["FACEVAULT_THREADS"] = "1"
        os.environ["OMP_NUM_THREADS"] = "1"

    rounds = []
    for r in range(args.rounds):
        row: dict[str, Any] = {"facevault": {}}
        for v in variants:
            row["facevault"][v] = run_facevault(paths, args.workers, v)
        use_detector("default")
        row["face_recognition"] = (
            None if args.skip_face_recognition else run_face_recognition(paths, args.workers)
        )
        rounds.append(row)
        fr = row["face_recognition"]
        parts = [
            f"facevault[{v}] {x['faces']} faces {x['wall_s']:.1f} s = {x['faces_per_s']:.1f}/s"
            + (f" ({x['faces_per_s'] / fr['faces_per_s']:.2f}x)" if fr else "")
            for v, x in row["facevault"].items()
        ]
        if fr:
            parts.append(
                f"face_recognition {fr['faces']} faces {fr['wall_s']:.1f} s = {fr['faces_per_s']:.1f}/s"
            )
        print(f"round {r + 1}: " + "; ".join(parts), flush=True)
    embed = [] if args.skip_embed else embedding_only(paths)
    helpt = help_time()

    print(f"\ningest, {len(paths)} shared LFW images, {args.workers} workers, TTA {settings.tta}")
    print(f"{'pipeline':<50}{'faces':>7}{'faces/s':>10}{'vs face_recognition':>22}")
    summary: dict[str, Any] = {}
    for v in variants:
        rate = statistics.median(rr["facevault"][v]["faces_per_s"] for rr in rounds)
        ratios = (
            []
            if args.skip_face_recognition
            else [rr["facevault"][v]["faces_per_s"] / rr["face_recognition"]["faces_per_s"] for rr in rounds]
        )
        summary[v] = {"faces_per_s_median": rate, "ratios": ratios}
        label = f"facevault, detector {v} (decode..store)"
        rtxt = ", ".join(f"{x:.2f}x" for x in ratios) or "-"
        print(f"{label:<50}{rounds[0]['facevault'][v]['faces']:>7}{rate:>10.1f}{rtxt:>22}")
    if not args.skip_face_recognition:
        fr_rate = statistics.median(rr["face_recognition"]["faces_per_s"] for rr in rounds)
        summary["face_recognition"] = {"faces_per_s_median": fr_rate}
        label = "face_recognition (load_image_file+face_encodings)"
        print(f"{label:<50}{rounds[0]['face_recognition']['faces']:>7}{fr_rate:>10.1f}{'1.00x':>22}")
        print("(ratios are per round, measured back to back; target >= 3x)")
    if embed:
        print(f"\n{'embedding only (150x150 chips)':<34}{'threads':>8}{'batch':>7}{'ms/face':>10}")
        for e in embed:
            print(f"{e['runtime']:<34}{e['threads']:>8}{e['batch']:>7}{e['ms_per_face']:>10.2f}")
    print(
        f"\nfacevault --help: median {helpt['median_s']:.2f} s "
        f"(min {helpt['min_s']:.2f}, max {helpt['max_s']:.2f})"
    )
    result = {
        "bench": "ingest",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "images": len(paths),
        "workers": args.workers,
        "tta": settings.tta,
        "detectors": variants,
        "summary": summary,
        "rounds": rounds,
        "embedding_only": embed,
        "help": helpt,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
