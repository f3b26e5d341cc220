"""Settings of dlib's HOG detector (the default pack's) on LFW and dlib_faces/testing.xml.

The per-detector FDDB bench is ``bench.detection``; this module measures HOG settings only.

Two figures (issue 3, section 3):

1. LFW: the share of the shared deep-funneled LFW images (6,922) in which the detector finds at least one
   face. Target >= 98%.
2. dlib_faces/testing.xml (PASCAL VOC photos, 25 labelled boxes): the share of labelled boxes matched by a
   detection at IoU >= 0.5 (greedy one-to-one matching, highest IoU first) and the number of detections
   that match no labelled box ("false detections"). Targets >= 90% and <= 2. ``dogs.jpg`` (no human face)
   is reported separately as a negative image.

Images are decoded with ``facevault.imaging.load_image`` exactly as enrollment does. Settings other than
the default can be measured with ``--upsample-below`` / ``--adjust-threshold`` / ``--upsample`` (the
latter forces a fixed number of pyramid upsamplings, which ``DlibHogDetector`` itself does not offer),
and ``--sweep`` measures a small grid of settings on testing.xml (seconds) before the LFW run.

    .venv/bin/python -m bench.detection_hog [--data ../shared/data] [--workers 2] [--sweep] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench.detection_fddb import read_imglab
from bench.detection_match import match

from facevault import imaging
from facevault.models.base import DetectedFace
from facevault.models.dlib.models import DlibHogDetector

Box = tuple[float, float, float, float]


class FixedUpsampleHog(DlibHogDetector):
    """DlibHogDetector with a fixed number of pyramid upsamplings (bench only)."""

    def __init__(self, upsample: int, adjust_threshold: float = 0.0) -> None:
        super().__init__(adjust_threshold=adjust_threshold)
        self.upsample = upsample

    def _upsample_count(self, pixels: np.ndarray) -> int:
        return self.upsample


class UpsampleOnMissHog(DlibHogDetector):
    """Scan the image at its own scale first and upsample once only when that finds no face (and the
    image is no larger than ``upsample_below``): about 4x less HOG work on images whose faces are
    >= 80 px, at the cost of faces under 80 px in an image that also holds a larger one.

    With ``portrait_fraction`` > 0, the upsampled scan is also run when the largest face found is
    smaller than that fraction of the image's longer side (a group or street photo, where small faces
    are likely), and skipped only for portrait-like images. A proposed change to
    ``DlibHogDetector.detect`` (see docs/BENCH-MODELS.md)."""

    _force: int | None = None

    def __init__(self, *args: Any, portrait_fraction: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.portrait_fraction = portrait_fraction

    def _upsample_count(self, pixels: np.ndarray) -> int:
        return self._force if self._force is not None else super()._upsample_count(pixels)

    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        self._force = 0
        try:
            faces = super().detect(pixels)
        finally:
            self._force = None
        if self._upsample_count(pixels) == 0:
            return faces
        if faces and max(f.height for f in faces) >= self.portrait_fraction * max(pixels.shape[:2]):
            return faces
        return super().detect(pixels)


@dataclass(frozen=True)
class DetectorSetting:
    upsample_below: int = 1000
    adjust_threshold: float = 0.0
    upsample: int | None = None  # None: DlibHogDetector's own rule (1 if the image is small enough)
    on_miss: bool = False  # upsample only when the image's own scale finds nothing
    portrait_fraction: float = 0.0  # with on_miss: also upsample unless a face is this large

    def build(self) -> DlibHogDetector:
        if self.upsample is not None:
            return FixedUpsampleHog(self.upsample, self.adjust_threshold)
        if self.on_miss:
            return UpsampleOnMissHog(
                upsample_below=self.upsample_below,
                adjust_threshold=self.adjust_threshold,
                portrait_fraction=self.portrait_fraction,
            )
        return DlibHogDetector(upsample_below=self.upsample_below, adjust_threshold=self.adjust_threshold)

    def label(self) -> str:
        if self.upsample is not None:
            up = f"upsample={self.upsample}"
        else:
            up = f"upsample_below={self.upsample_below}"
            if self.on_miss:
                up += " on miss only"
                if self.portrait_fraction:
                    up += f" or when faces < {self.portrait_fraction:g} x image side"
        return f"{up}, adjust_threshold={self.adjust_threshold:g}"


_worker: dict[str, Any] = {}


def _init(setting: DetectorSetting) -> None:
    _worker["det"] = setting.build()


def _count_faces(path: str) -> tuple[str, int, float]:
    det: DlibHogDetector = _worker["det"]
    pixels = imaging.load_image(path).pixels
    t = time.perf_counter()
    n = len(det.detect(pixels))
    return path, n, time.perf_counter() - t


def lfw_yield(paths: list[str], setting: DetectorSetting, workers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    if workers <= 1:
        _init(setting)
        results = [_count_faces(p) for p in paths]
    else:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(setting,)) as pool:
            results = list(pool.map(_count_faces, paths, chunksize=16))
    wall = time.perf_counter() - t0
    counts = np.array([n for _, n, _ in results])
    secs = np.array([s for _, _, s in results])
    missed = [os.path.relpath(p, Path(paths[0]).parent.parent) for p, n, _ in results if n == 0]
    return {
        "setting": setting.label(),
        "images": len(paths),
        "with_face": int((counts > 0).sum()),
        "share_with_face": float((counts > 0).mean()),
        "with_several_faces": int((counts > 1).sum()),
        "detect_ms_mean": float(secs.mean() * 1000),
        "wall_s": round(wall, 1),
        "missed": missed,
    }


def voc_boxes(folder: Path, setting: DetectorSetting, min_iou: float = 0.5) -> dict[str, Any]:
    truth = read_imglab(folder / "testing.xml")
    det = setting.build()
    per_image = []
    total = found = false = 0
    all_ious: list[float] = []
    for name, boxes in truth.items():
        pixels = imaging.load_image(folder / name).pixels
        faces = det.detect(pixels)
        m, f, ious = match(boxes, [fc.box for fc in faces], min_iou)
        total, found, false = total + len(boxes), found + m, false + f
        all_ious += ious
        per_image.append(
            {"image": name, "boxes": len(boxes), "found": m, "false": f, "detections": len(faces)}
        )
    negatives = {}
    dogs = folder / "dogs.jpg"
    if dogs.exists():
        negatives["dogs.jpg"] = len(det.detect(imaging.load_image(dogs).pixels))
    return {
        "setting": setting.label(),
        "boxes": total,
        "found": found,
        "recall": found / total if total else 0.0,
        "false_detections": false,
        "mean_iou_of_matches": float(np.mean(all_ious)) if all_ious else 0.0,
        "per_image": per_image,
        "negative_images": negatives,
    }


def lfw_paths(data: Path, limit: int | None) -> list[str]:
    root = data / "lfw" / "lfw-deepfunneled"
    paths = sorted(str(p) for p in root.glob("*/*.jpg"))
    return paths[:limit] if limit else paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N LFW images (smoke runs)")
    ap.add_argument("--upsample-below", type=int, default=1000)
    ap.add_argument("--adjust-threshold", type=float, default=0.0)
    ap.add_argument("--upsample", type=int, default=None, help="force this many upsamplings")
    ap.add_argument("--upsample-on-miss", action="store_true", help="upsample only when nothing is found")
    ap.add_argument(
        "--portrait-fraction",
        type=float,
        default=0.0,
        help="with --upsample-on-miss: also upsample unless a face found is this fraction of the image side",
    )
    ap.add_argument("--sweep", action="store_true", help="also try a grid of settings on testing.xml")
    ap.add_argument("--skip-lfw", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data = Path(args.data)
    setting = DetectorSetting(
        args.upsample_below,
        args.adjust_threshold,
        args.upsample,
        args.upsample_on_miss,
        args.portrait_fraction,
    )

    voc = voc_boxes(data / "dlib_faces", setting)
    sweep = []
    if args.sweep:
        for up in (1, 2):
            for adj in (-0.5, -0.25, 0.0, 0.25):
                sweep.append(
                    voc_boxes(data / "dlib_faces", DetectorSetting(adjust_threshold=adj, upsample=up))
                )
    lfw = None if args.skip_lfw else lfw_yield(lfw_paths(data, args.limit), setting, args.workers)

    print(f"detector: dlib HOG frontal + 5-point landmarks ({setting.label()})")
    print(f"{'set':<34}{'figure':>22}{'target':>12}")
    if lfw:
        print(
            f"{'LFW deep-funneled images':<34}"
            f"{lfw['with_face']:>6}/{lfw['images']} = {100 * lfw['share_with_face']:6.2f}%{'>= 98%':>12}"
        )
    print(
        f"{'testing.xml boxes at IoU>=0.5':<34}"
        f"{voc['found']:>8}/{voc['boxes']} = {100 * voc['recall']:6.2f}%{'>= 90%':>12}"
    )
    print(f"{'testing.xml false detections':<34}{voc['false_detections']:>22}{'<= 2':>12}")
    print(f"{'dogs.jpg detections (negative)':<34}{voc['negative_images'].get('dogs.jpg', '-')!s:>22}")
    if lfw:
        print(
            f"LFW: {lfw['detect_ms_mean']:.1f} ms/image detect, "
            f"{lfw['wall_s']} s wall on {args.workers} workers"
        )
    if sweep:
        print("\ntesting.xml sweep")
        print(f"{'setting':<40}{'found':>10}{'false':>8}{'dogs':>6}")
        for s in sweep:
            print(
                f"{s['setting']:<40}{s['found']:>5}/{s['boxes']:<4}{s['false_detections']:>8}"
                f"{s['negative_images'].get('dogs.jpg', '-')!s:>6}"
            )
    result = {
        "bench": "detection",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "setting": setting.label(),
        "lfw": lfw,
        "testing_xml": voc,
        "sweep": sweep,
    }
    out = Path(args.out or "bench/results/detection.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
