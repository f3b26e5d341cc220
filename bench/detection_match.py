"""Matching detections to annotated faces, and the pooled discrete ROC (no data, no models: pure numpy).

The rule, once, for every figure of ``bench.detection``:

- In one image, detections and annotated boxes are matched one-to-one and greedily by IoU: the pair with
  the highest IoU first, then the next highest pair whose face and detection are both still free, down to
  the minimum IoU (ties: the lower face index, then the lower detection index).
- A face is found when it is matched; a detection is **false** when it is matched to no face. A second
  detection on an already-matched face is therefore false too.
- The ROC pools the detections of all images and lowers one score threshold over them; at every threshold
  the matching above is redone on the detections that pass it (computed per image for each prefix of its
  detections ranked by score, so the curve is exact, not an approximation by score-ordered matching). The
  true-positive rate at N false detections is the best recall among thresholds that give at most N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


def iou_matrix(truth: Sequence[Sequence[float]], found: Sequence[Sequence[float]]) -> np.ndarray:
    """(len(truth), len(found)) IoU of (x1, y1, x2, y2) boxes."""
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    f = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(t[:, None, 2], f[None, :, 2]) - np.maximum(t[:, None, 0], f[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(t[:, None, 3], f[None, :, 3]) - np.maximum(t[:, None, 1], f[None, :, 1]), 0, None)
    inter = iw * ih
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    area_f = (f[:, 2] - f[:, 0]) * (f[:, 3] - f[:, 1])
    union = area_t[:, None] + area_f[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_pairs(ious: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs (face index, detection index, IoU), highest IoU first, IoU >= min_iou."""
    if ious.size == 0:
        return []
    ti, fi = np.nonzero(ious >= min_iou)
    order = sorted(zip(ti.tolist(), fi.tolist(), strict=True), key=lambda p: (-ious[p], p[0], p[1]))
    used_t: set[int] = set()
    used_f: set[int] = set()
    pairs = []
    for i, j in order:
        if i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        pairs.append((i, j, float(ious[i, j])))
    return pairs


def match(truth: Sequence[Box], found: Sequence[Box], min_iou: float = 0.5) -> tuple[int, int, list[float]]:
    """(faces found, false detections, IoUs of the matches) in one image."""
    pairs = match_pairs(iou_matrix(truth, found), min_iou)
    return len(pairs), len(found) - len(pairs), [v for _, _, v in pairs]


def prefix_counts(truth: Sequence[Box], found: Sequence[Box], min_iou: float) -> list[tuple[int, int]]:
    """(found, false) when only the first k detections count, for k = 0 .. len(found); ``found`` must be
    ranked by score, best first."""
    ious = iou_matrix(truth, found)
    out = [(0, 0)]
    for k in range(1, len(found) + 1):
        m = len(match_pairs(ious[:, :k], min_iou))
        out.append((m, k - m))
    return out


@dataclass(frozen=True)
class RocPoint:
    threshold: float  # detections scoring >= this count
    found: int
    false: int


@dataclass(frozen=True)
class ImageDetections:
    """One image: its annotated boxes and the detections (boxes, scores) a detector returned."""

    truth: list[Box]
    boxes: list[Box]
    scores: list[float]

    def ranked(self) -> tuple[list[Box], list[float]]:
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])
        return [self.boxes[i] for i in order], [self.scores[i] for i in order]

    def above(self, threshold: float) -> list[Box]:
        return [b for b, s in zip(self.boxes, self.scores, strict=True) if s >= threshold]


def pooled_roc(images: Sequence[ImageDetections], min_iou: float) -> list[RocPoint]:
    """The curve from the highest threshold (nothing detected) down to the lowest score, one point per
    distinct score; each point is the exact matching of the detections scoring at least that much."""
    events: list[tuple[float, int, int, int]] = []  # (score, d_found, d_false, image) per detection
    for idx, img in enumerate(images):
        boxes, scores = img.ranked()
        counts = prefix_counts(img.truth, boxes, min_iou)
        for k, s in enumerate(scores, start=1):
            events.append((s, counts[k][0] - counts[k - 1][0], counts[k][1] - counts[k - 1][1], idx))
    events.sort(key=lambda e: -e[0])
    points = [RocPoint(float("inf"), 0, 0)]
    found = false = 0
    for n, (score, d_found, d_false, _) in enumerate(events):
        found += d_found
        false += d_false
        if n + 1 == len(events) or events[n + 1][0] != score:
            points.append(RocPoint(float(score), found, false))
    return points


def rate_at_false(points: Sequence[RocPoint], faces: int, budget: int) -> dict[str, float | int | bool]:
    """The best true-positive rate with at most ``budget`` false detections. ``reached`` is False when the
    whole curve (down to the lowest score collected) stays under the budget: the rate is then a lower
    bound, limited by the score floor the detections were collected at."""
    ok = [p for p in points if p.false <= budget]
    best = max(ok, key=lambda p: (p.found, -p.false))
    return {
        "tpr": best.found / faces if faces else 0.0,
        "found": best.found,
        "false": best.false,
        "threshold": best.threshold,
        "reached": any(p.false >= budget for p in points),
    }


def at_threshold(
    images: Sequence[ImageDetections], threshold: float, min_iou: float, small_width: float = 40.0
) -> dict[str, int]:
    """Counts at one operating threshold: faces, found, false detections, detections, and the same for
    faces narrower than ``small_width`` px (box width), matched with all faces of their image."""
    faces = found = false = dets = small = small_found = 0
    for img in images:
        kept = img.above(threshold)
        pairs = match_pairs(iou_matrix(img.truth, kept), min_iou)
        matched = {i for i, _, _ in pairs}
        faces += len(img.truth)
        found += len(pairs)
        dets += len(kept)
        false += len(kept) - len(pairs)
        for i, b in enumerate(img.truth):
            if b[2] - b[0] < small_width:
                small += 1
                small_found += i in matched
    return {
        "faces": faces,
        "found": found,
        "false": false,
        "detections": dets,
        "small_faces": small,
        "small_found": small_found,
    }
