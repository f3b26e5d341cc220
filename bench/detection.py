"""Face detectors on the shared FDDB folds, LFW and dlib_faces/testing.xml (issue 12, item 1).

Per detector (names below), on FDDB folds 1-5 (1,408 images, 2,532 faces, each face's ellipse taken as
its axis-aligned box):

- recall at IoU 0.5 and 0.3 and false detections, at the detector's operating threshold; matching is
  one-to-one, greedy by IoU (``bench/detection_match.py`` states the rule); a detection is false when it
  is matched to no face at IoU 0.3 (a second detection of a matched face is false too);
- the discrete ROC: detections of all images pooled and ranked by score, the true-positive rate at 50,
  100, 500 and 1000 false detections (IoU 0.3, and 0.5 in the JSON);
- recall of faces under 40 px (box width) at the operating threshold;
- ms per image (``detect`` only, decode excluded) on one thread and on two (ONNX detectors: two
  onnxruntime intra-op threads in one process; dlib: two worker processes), with the CPU share other
  processes took meanwhile (figures under load are provisional);
- LFW deep-funneled: share of images with a face; testing.xml: boxes found at IoU 0.5, false detections.

Detectors: hog (the search path today: DlibHogDetector defaults, one upsample below 1000 px), hog-up0,
hog-up2, yunet (2023mar, fixed 640), yunet-dyn, scrfd-500m, scrfd-2.5g (model files from
FACEVAULT_TEST_MODELS, default ../shared/models), mmod (facevault.models.dlib.mmod, when present) and
default (the registry's default pack's detector). A missing one is skipped with its reason.

    nice -n 10 .venv/bin/python -m bench.detection --detectors hog,yunet [--score-threshold T] [--limit N]

Results are merged into bench/results/detection-fddb.json (one entry per detector and threshold) and the
Markdown table of every entry is printed. The HOG-settings bench of issue 3 is ``bench.detection_hog``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.detection_detectors import KINDS, Choice, Unavailable, threshold_of, with_threshold
from bench.detection_fddb import (
    fddb_figures,
    lfw_figures,
    lfw_paths,
    read_fddb,
    testing_xml_figures,
    testing_xml_paths,
)
from bench.detection_hog import UpsampleOnMissHog
from bench.detection_report import table, targets
from bench.detection_runs import detect_all, timed

__all__ = ["UpsampleOnMissHog", "main"]  # bench.ingest imports UpsampleOnMissHog from here

RULE = (
    "greedy one-to-one matching by IoU (highest pair first) of detections to ellipse boxes; a face is found "
    "when matched; a detection is false when matched to no face at IoU 0.3; ROC: detections pooled over "
    "images, ranked by score, the matching redone at every threshold, TPR at N false = best recall with "
    "at most N false detections"
)


def _resolve(name: str, override: float | None) -> tuple[float | None, float | None]:
    """(operating threshold, ROC collection floor) of a detector; raises Unavailable."""
    kind = KINDS.get(name)
    if kind is None:
        raise Unavailable(f"unknown detector; known: {', '.join(KINDS)}")
    base = kind.make()
    getattr(base, "model_path", None)  # a converted model (MMOD) is made once here, not in every worker
    own = threshold_of(base)
    if override is not None:
        try:
            with_threshold(base, override)
        except ValueError as exc:
            raise Unavailable(f"--score-threshold not supported: {exc}") from exc
    operating = override if override is not None else own
    if operating is None or kind.floor is None:
        return operating, None
    return operating, min(kind.floor, operating)


def run_one(name: str, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    operating, floor = _resolve(name, args.score_threshold)
    op_choice = Choice(name, args.score_threshold)
    items = read_fddb(data / "fddb", args.limit)
    paths, truth = [p for p, _ in items], [t for _, t in items]
    t0 = time.perf_counter()
    op_dets = detect_all(op_choice, paths, args.workers)
    two_runs = floor is not None and floor != operating
    floor_dets = detect_all(Choice(name, floor), paths, args.workers) if two_runs else None
    low = float("-inf") if operating is None else operating
    result: dict[str, Any] = {
        "detector": name,
        "description": KINDS[name].description,
        "licence": KINDS[name].licence,
        "operating_threshold": operating,
        "roc_floor": floor,
        "fddb": fddb_figures(truth, op_dets, floor_dets, low),
        "fddb_pass_wall_s": round(time.perf_counter() - t0, 1),
    }
    print(f"  {name}: FDDB detections collected ({result['fddb_pass_wall_s']} s)", file=sys.stderr)
    timing_paths = paths[: args.timing_limit] if args.timing_limit else paths
    result["timing"] = {str(n): timed(op_choice, timing_paths, n) for n in (1, 2)}
    print(f"  {name}: timed", file=sys.stderr)
    if not args.skip_lfw:
        lfw = lfw_paths(data, args.limit, args.lfw_every)
        result["lfw"] = {
            **lfw_figures(lfw, detect_all(op_choice, lfw, args.workers), low),
            "every": args.lfw_every,
        }
        print(f"  {name}: LFW done", file=sys.stderr)
    xml_paths, xml_truth = testing_xml_paths(data / "dlib_faces")
    result["testing_xml"] = testing_xml_figures(
        xml_paths, xml_truth, detect_all(op_choice, xml_paths, 1), low
    )
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", default="hog", help=f"comma-separated: {','.join(KINDS)}")
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--score-threshold", type=float, default=None, help="operating threshold override")
    ap.add_argument("--limit", type=int, default=None, help="only the first N FDDB (and LFW) images")
    ap.add_argument("--timing-limit", type=int, default=None, help="time on the first N FDDB images only")
    ap.add_argument("--lfw-every", type=int, default=1, help="every K-th LFW image only")
    ap.add_argument("--skip-lfw", action="store_true")
    ap.add_argument("--workers", type=int, default=2, help="processes for the untimed passes")
    ap.add_argument("--out", default="bench/results/detection-fddb.json")
    ap.add_argument("--report-only", action="store_true", help="print the table of --out, run nothing")
    args = ap.parse_args(argv)
    data = Path(args.data)
    out = Path(args.out)
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    doc.setdefault("results", {})
    doc.update(
        bench="detection-fddb",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        matching=RULE,
    )
    names = [] if args.report_only else [n.strip() for n in args.detectors.split(",") if n.strip()]
    for name in names:
        key = name if args.score_threshold is None else f"{name}@{args.score_threshold:g}"
        print(f"{key} ...", file=sys.stderr)
        try:
            result = run_one(name, args, data)
        except Unavailable as exc:
            print(f"  skipped {name}: {exc}", file=sys.stderr)
            continue
        result["limit"] = args.limit
        result["measured"] = time.strftime("%Y-%m-%d %H:%M")
        doc["results"][key] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(table(doc["results"]))
    print()
    print(targets(doc["results"]))
    if names:
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
