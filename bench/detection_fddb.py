"""The data sets of ``bench.detection`` and the figures computed on them for one detector.

- FDDB folds 1-5 (``fddb/faces.csv``): each face's ellipse as its axis-aligned box (FDDB's ellipses run
  from forehead to chin, so they are taller than most detectors' boxes; hence IoU 0.3 next to 0.5).
- LFW deep-funneled: the share of images in which at least one face is found.
- ``dlib_faces/testing.xml``: boxes found at IoU >= 0.5 and false detections; ``dogs.jpg`` as a negative.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.detection_match import (
    Box,
    ImageDetections,
    at_threshold,
    match,
    pooled_roc,
    rate_at_false,
)
from bench.detection_runs import Detections

ROC_BUDGETS = (50, 100, 500, 1000)
SMALL_WIDTH = 40.0


def read_fddb(root: Path, limit: int | None = None) -> list[tuple[str, list[Box]]]:
    """[(image path, [face boxes])] in the order of ``faces.csv``; the first ``limit`` images."""
    faces: dict[str, list[Box]] = {}
    with open(root / "faces.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
            faces.setdefault(row["image"], []).append(box)
    items = [(str(root / "images" / name), boxes) for name, boxes in faces.items()]
    return items[:limit] if limit else items


def _images(truth: Sequence[list[Box]], detections: Sequence[Detections]) -> list[ImageDetections]:
    return [
        ImageDetections(list(t), [tuple(b) for b in boxes], list(scores))  # type: ignore[misc]
        for t, (boxes, scores) in zip(truth, detections, strict=True)
    ]


def same_above(floor: Sequence[Detections], operating: Sequence[Detections], threshold: float) -> int:
    """Images where the floor run's detections scoring >= ``threshold`` differ from the operating run's
    (0 when the detector's threshold only filters; a detector whose search depends on what it found,
    e.g. a second look when nothing passes, can differ)."""

    def key(boxes: Sequence[Sequence[float]]) -> list[tuple[float, ...]]:
        return sorted(tuple(round(v, 1) for v in b) for b in boxes)

    return sum(
        key([b for b, s in zip(fb, fs, strict=True) if s >= threshold]) != key(ob)
        for (fb, fs), (ob, _) in zip(floor, operating, strict=True)
    )


def fddb_figures(
    truth: Sequence[list[Box]],
    operating_run: Sequence[Detections],
    floor_run: Sequence[Detections] | None,
    operating: float,
) -> dict[str, Any]:
    """Every FDDB figure of one detector: the operating-point figures from its run at the operating
    threshold, the ROC from its run at the floor (or the operating run when there is none)."""
    images = _images(truth, operating_run)
    out: dict[str, Any] = {"images": len(images), "operating_threshold": operating}
    for iou in (0.5, 0.3):
        counts = at_threshold(images, operating, iou, SMALL_WIDTH)
        faces, small = counts["faces"], counts["small_faces"]
        out[f"iou{iou}"] = {
            **counts,
            "recall": counts["found"] / faces if faces else 0.0,
            "small_recall": counts["small_found"] / small if small else 0.0,
        }
    roc_images = images if floor_run is None else _images(truth, floor_run)
    if floor_run is not None:
        out["images_where_floor_run_differs"] = same_above(floor_run, operating_run, operating)
    faces = out["iou0.3"]["faces"]
    for iou in (0.3, 0.5):
        points = pooled_roc(roc_images, iou)
        at_op = [p for p in points if p.threshold >= operating][-1]
        lowest = points[-1]
        out[f"roc_iou{iou}"] = {
            "lowest_score": None if len(points) == 1 else lowest.threshold,
            "found_at_lowest": lowest.found,
            "false_at_lowest": lowest.false,
            "at_operating": {"found": at_op.found, "false": at_op.false},
            "at_false": {str(n): rate_at_false(points, faces, n) for n in ROC_BUDGETS},
        }
    return out


def lfw_paths(data: Path, limit: int | None, every: int = 1) -> list[str]:
    root = data / "lfw" / "lfw-deepfunneled"
    paths = sorted(str(p) for p in root.glob("*/*.jpg"))[::every]
    return paths[:limit] if limit else paths


def lfw_figures(paths: Sequence[str], detections: Sequence[Detections], operating: float) -> dict[str, Any]:
    counts = [sum(s >= operating for s in scores) for _, scores in detections]
    with_face = sum(c > 0 for c in counts)
    missed = [
        str(Path(p).relative_to(Path(p).parent.parent)) for p, c in zip(paths, counts, strict=True) if not c
    ]
    return {
        "images": len(paths),
        "with_face": with_face,
        "share_with_face": with_face / len(paths) if paths else 0.0,
        "with_several_faces": sum(c > 1 for c in counts),
        "missed_first_20": missed[:20],
    }


def read_imglab(path: Path) -> dict[str, list[Box]]:
    """dlib imglab XML -> {file: [(x1, y1, x2, y2)]}; boxes marked ignore='1' are dropped."""
    out: dict[str, list[Box]] = {}
    for image in ET.parse(path).getroot().iter("image"):
        boxes = []
        for b in image.iter("box"):
            if b.get("ignore") == "1":
                continue
            x, y = float(b.get("left", 0)), float(b.get("top", 0))
            w, h = float(b.get("width", 0)), float(b.get("height", 0))
            boxes.append((x, y, x + w, y + h))
        out[image.get("file", "")] = boxes
    return out


def testing_xml_paths(folder: Path) -> tuple[list[str], list[list[Box]]]:
    """The labelled images of testing.xml, then dogs.jpg (no face) when present."""
    truth = read_imglab(folder / "testing.xml")
    paths = [str(folder / name) for name in truth]
    boxes = list(truth.values())
    if (folder / "dogs.jpg").exists():
        paths.append(str(folder / "dogs.jpg"))
        boxes.append([])
    return paths, boxes


def testing_xml_figures(
    paths: Sequence[str], truth: Sequence[list[Box]], detections: Sequence[Detections], operating: float
) -> dict[str, Any]:
    total = found = false = 0
    negatives: dict[str, int] = {}
    for path, boxes, (dets, scores) in zip(paths, truth, detections, strict=True):
        kept = [tuple(b) for b, s in zip(dets, scores, strict=True) if s >= operating]
        if Path(path).name == "dogs.jpg":
            negatives["dogs.jpg"] = len(kept)
            continue
        m, f, _ = match(boxes, kept, 0.5)  # type: ignore[arg-type]
        total, found, false = total + len(boxes), found + m, false + f
    return {
        "boxes": total,
        "found": found,
        "recall": found / total if total else 0.0,
        "false_detections": false,
        "negative_images": negatives,
    }
