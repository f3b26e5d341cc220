"""facevault's YuNet decoder against OpenCV's own (``cv2.FaceDetectorYN``) on the same model file and the
same FDDB images, matched by the same rule (``bench/detection_match.py``).

The point: whether the false detections ``bench.detection`` counts for YuNet come from facevault's
pre- and post-processing or from the network and FDDB's annotations. OpenCV runs in three input modes:
``letterbox`` (the image fitted into 640 x 640, padded right and bottom, as facevault does), ``stretch``
(resized to 640 x 640) and ``native`` (the image at its own size, padded by OpenCV to a multiple of 32).
Every mode collects detections down to score 0.3 with NMS 0.3 (OpenCV's and facevault's), so the
figures at 0.6 and the ROC at 100 false detections come from one run.

    .venv/bin/pip install -e '.[opencv-reference]'
    .venv/bin/python -m bench.detection_opencv [--out bench/results/detection-opencv-yunet.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench.detection_detectors import Choice, models_dir
from bench.detection_fddb import read_fddb
from bench.detection_match import ImageDetections, pooled_roc, rate_at_false

from facevault import imaging

FILE = "face_detection_yunet_2023mar.onnx"
FLOOR = 0.3
OPERATING = 0.6
SIDE = 640
Detections = tuple[list[tuple[float, ...]], list[float]]


def opencv_detections(paths: list[str], mode: str) -> list[Detections]:
    import cv2

    det = cv2.FaceDetectorYN.create(str(models_dir() / FILE), "", (SIDE, SIDE), FLOOR, 0.3, 5000)
    out: list[Detections] = []
    for path in paths:
        img = cv2.imread(path)
        h, w = img.shape[:2]
        if mode == "native":
            inp, sx, sy = img, 1.0, 1.0
        elif mode == "stretch":
            inp, sx, sy = cv2.resize(img, (SIDE, SIDE)), SIDE / w, SIDE / h
        else:  # letterbox
            s = min(SIDE / w, SIDE / h)
            nw, nh = round(w * s), round(h * s)
            inp = np.zeros((SIDE, SIDE, 3), np.uint8)
            inp[:nh, :nw] = cv2.resize(img, (nw, nh))
            sx, sy = nw / w, nh / h
        det.setInputSize((inp.shape[1], inp.shape[0]))
        _, found = det.detect(inp)
        rows = [] if found is None else found
        boxes = [(d[0] / sx, d[1] / sy, (d[0] + d[2]) / sx, (d[1] + d[3]) / sy) for d in rows]
        out.append(([tuple(float(v) for v in b) for b in boxes], [float(d[-1]) for d in rows]))
    return out


def facevault_detections(paths: list[str]) -> list[Detections]:
    det = Choice("yunet", threshold=FLOOR).build()
    out: list[Detections] = []
    for path in paths:
        faces = det.detect(imaging.load_image(path).pixels)
        out.append(([tuple(float(v) for v in f.box) for f in faces], [float(f.score) for f in faces]))
    return out


def figures(truth: list[list[Any]], dets: list[Detections]) -> dict[str, Any]:
    images = [ImageDetections(list(t), list(b), list(s)) for t, (b, s) in zip(truth, dets, strict=True)]
    faces = sum(len(t) for t in truth)
    points = pooled_roc(images, 0.3)
    at = [p for p in points if p.threshold >= OPERATING][-1]
    return {
        "recall_at_0.6": round(at.found / faces, 4),
        "false_at_0.6": at.false,
        "tpr_at_100_false": rate_at_false(points, faces, 100),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--modes", default="letterbox,native,stretch")
    ap.add_argument("--out", default="bench/results/detection-opencv-yunet.json")
    args = ap.parse_args()
    items = read_fddb(Path(args.data) / "fddb")
    paths, truth = [p for p, _ in items], [t for _, t in items]
    import cv2

    faces = sum(len(t) for t in truth)
    results: dict[str, Any] = {"images": len(paths), "faces": faces, "opencv": cv2.__version__}
    runs = {"facevault letterbox": lambda: facevault_detections(paths)}
    runs |= {f"opencv {m}": (lambda m=m: opencv_detections(paths, m)) for m in args.modes.split(",")}
    for name, run in runs.items():
        started = time.perf_counter()
        results[name] = {**figures(truth, run()), "seconds": round(time.perf_counter() - started, 1)}
        print(name, results[name], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
