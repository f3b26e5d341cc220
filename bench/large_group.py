"""Small faces in large group photos: the whole-photo pass against the same pass plus full-resolution tiles.

A large photo with many small, annotated faces: real FDDB news photos at their own resolution (no
enlarging, so no invented detail) laid side by side on a ``--size`` canvas (default 4096 x 3072, 12.6
megapixels), every annotated face moved with its photo. Each mosaic goes through the pipeline's
``detect`` (the photo cut to ``max_detect_side`` for the whole-photo pass, the detector over tiles of the
full-resolution photo with ``detect_tiles`` on), and is scored as ``bench.detection`` scores FDDB:
one-to-one matches at IoU >= 0.3 against the ellipses' boxes, the rest false.

    .venv/bin/python -m bench.large_group [--mosaics 2] [--detectors default,yunet] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bench.detection_detectors import Choice, Unavailable
from bench.detection_fddb import SMALL_WIDTH, read_fddb
from bench.detection_match import Box, iou_matrix, match_pairs
from PIL import Image

from facevault.models import get_pack
from facevault.pipeline import Pipeline


def mosaic(items: list[tuple[str, list[Box]]], size: tuple[int, int]) -> tuple[np.ndarray, list[Box]]:
    """FDDB photos at their own scale, row by row, until the canvas is full; (pixels, face boxes)."""
    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    boxes: list[Box] = []
    x = y = row_h = 0
    for path, faces in items:
        im = np.asarray(Image.open(path).convert("RGB"))
        h, w = im.shape[:2]
        if x + w > width:
            x, y, row_h = 0, y + row_h, 0
        if y + h > height:
            break
        canvas[y : y + h, x : x + w] = im
        for x1, y1, x2, y2 in faces:  # ellipse boxes may leave the photo: clip them to it
            boxes.append((max(0, x1) + x, max(0, y1) + y, min(w, x2) + x, min(h, y2) + y))
        x, row_h = x + w, max(row_h, h)
    return canvas, boxes


def pipeline_for(name: str, tiles: str) -> Pipeline:
    pack = get_pack("dlib-resnet-v1")
    if name != "default":
        pack = replace(pack, detector=Choice(name).build())
    return Pipeline(pack, tiles=tiles)


def score(truth: list[Box], found: list[Box]) -> dict[str, Any]:
    pairs = match_pairs(iou_matrix(truth, found), 0.3)
    small = [i for i, b in enumerate(truth) if b[2] - b[0] < SMALL_WIDTH]
    hit = {i for i, _, _ in pairs}
    return {
        "faces": len(truth),
        "found": len(pairs),
        "false": len(found) - len(pairs),
        "small_faces": len(small),
        "small_found": sum(1 for i in small if i in hit),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--mosaics", type=int, default=2)
    ap.add_argument("--size", default="4096x3072")
    ap.add_argument("--detectors", default="default,yunet")
    ap.add_argument("--out", default="bench/results/large-group.json")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    items = read_fddb(Path(args.data) / "fddb")
    step = max(1, len(items) // (args.mosaics * 120))
    pool = items[::step]
    per = len(pool) // args.mosaics
    photos = [mosaic(pool[i * per : (i + 1) * per], size) for i in range(args.mosaics)]  # type: ignore[arg-type]
    report: dict[str, Any] = {
        "size": list(size),
        "mosaics": args.mosaics,
        "faces": sum(len(b) for _, b in photos),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs": [],
    }
    for name in args.detectors.split(","):
        for tiles in ("off", "on"):
            try:
                pipe = pipeline_for(name, tiles)
            except Unavailable as exc:
                print(f"{name}: skipped ({exc})")
                break
            pipe.detect(photos[0][0][:200, :200])  # load the models outside the timing
            total: dict[str, Any] = {"detector": name, "tiles": tiles, "seconds": []}
            for pixels, truth in photos:
                t0 = time.perf_counter()
                _, scale, faces = pipe.detect(pixels)
                total["seconds"].append(round(time.perf_counter() - t0, 2))
                found = [tuple(v / scale for v in f.box) for f in faces]
                for k, v in score(truth, found).items():  # type: ignore[arg-type]
                    total[k] = total.get(k, 0) + v
            total["recall"] = round(total["found"] / max(1, total["faces"]), 3)
            total["recall_small"] = round(total["small_found"] / max(1, total["small_faces"]), 3)
            report["runs"].append(total)
            print(json.dumps(total), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
