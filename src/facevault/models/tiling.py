"""Finding small faces in large photos: the detector run over overlapping full-resolution tiles.

Why: every photo is searched on a copy no larger than ``max_detect_side`` (and the default detector scans
a large copy at about 800,000 pixels), so a face is only found when it is large enough *on that copy*. In
a 12-megapixel group photo shrunk to 1,600 pixels, a face 150 pixels wide becomes 60 pixels, and at the
default's scan scale under 40: below what any of the detectors find. Tiling looks at the photo itself,
piece by piece, each piece as large as the detector likes to see at once, so the smallest face found is
the detector's own minimum at full resolution.

What it costs: the detector's work grows with the pixels it looks at. A 12-megapixel photo is about 16
tiles of the default detector's 800,000-pixel scan (seconds per tile with dlib's MMOD; a YuNet tile of
640 x 640 takes tens of milliseconds), so tiling is a setting (``detect_tiles``), not the default.

Merging: the faces of the whole-photo pass are kept; a tile's face is added when it overlaps none kept
(IoU under ``MERGE_IOU``) and is not mostly inside one (a face cut by a tile's edge is found whole by the
whole-photo pass or by the neighbouring tile, which overlaps it by a third of a tile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .base import DetectedFace, Detector

MERGE_IOU = 0.3
INSIDE = 0.6  # share of a tile face's area inside a kept face that makes it a part of that face
OVERLAP = 1 / 3
DEFAULT_TILE_PIXELS = 800_000  # dlib detectors: the default detector's scan budget at scale 1
MODES = ("off", "on")


def tile_side(detector: Detector) -> int:
    """How large a square tile ``detector`` sees at once without shrinking it: an ONNX detector's fixed
    or largest input side, else the side of the default detector's scan budget."""
    spec = getattr(detector, "spec", None)
    size = getattr(spec, "input_size", None)
    if size:
        return int(max(size))
    return int(math.sqrt(DEFAULT_TILE_PIXELS))


def tile_grid(
    width: int, height: int, side: int, overlap: float = OVERLAP
) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) tiles of at most ``side`` pixels covering the image, neighbours overlapping by
    ``overlap`` of a tile; the last tile of a row or column ends at the image's edge."""

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        step = max(1, int(side * (1 - overlap)))
        out = list(range(0, length - side, step))
        return [*out, length - side]

    return [
        (x, y, min(width, x + side), min(height, y + side)) for y in starts(height) for x in starts(width)
    ]


def shifted(face: DetectedFace, dx: float, dy: float, factor: float = 1.0) -> DetectedFace:
    """``face`` moved by (dx, dy), then scaled by ``factor`` (tile pixels to another image's)."""
    x1, y1, x2, y2 = face.box
    return replace(
        face,
        box=((x1 + dx) * factor, (y1 + dy) * factor, (x2 + dx) * factor, (y2 + dy) * factor),
        landmarks=(face.landmarks + np.array([dx, dy], dtype=np.float32)) * np.float32(factor),
        left_eye=((face.left_eye[0] + dx) * factor, (face.left_eye[1] + dy) * factor),
        right_eye=((face.right_eye[0] + dx) * factor, (face.right_eye[1] + dy) * factor),
        nose=((face.nose[0] + dx) * factor, (face.nose[1] + dy) * factor),
    )


def _overlaps(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(IoU of a and b, share of a's area inside b)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return (inter / union if union > 0 else 0.0), (inter / area_a if area_a > 0 else 0.0)


def merge(kept: Sequence[DetectedFace], extra: Sequence[DetectedFace]) -> list[DetectedFace]:
    """``kept`` and every face of ``extra`` (best score first) that is neither the same face as one
    already kept nor a part of one."""
    out = list(kept)
    for face in sorted(extra, key=lambda f: -f.score):
        same = False
        for other in out:
            iou, inside = _overlaps(face.box, other.box)
            _, covers = _overlaps(other.box, face.box)
            if iou >= MERGE_IOU or inside >= INSIDE or covers >= INSIDE:
                same = True
                break
        if not same:
            out.append(face)
    return out


def detect_tiles(detector: Detector, pixels: np.ndarray, side: int | None = None) -> list[DetectedFace]:
    """Every face ``detector`` finds in full-resolution tiles of ``pixels``, in ``pixels`` coordinates,
    duplicates across overlapping tiles merged."""
    h, w = pixels.shape[:2]
    found: list[DetectedFace] = []
    for x0, y0, x1, y1 in tile_grid(w, h, side or tile_side(detector)):
        tile = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        found += [shifted(f, x0, y0) for f in detector.detect(tile)]
    return merge([], found)  # best first: a face cut by one tile's edge loses to its whole self
