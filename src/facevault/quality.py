"""Per-face quality: size, sharpness, exposure, pose from landmarks, detector score, and one overall score.

Pose comes from three points only (two eye centres and the nose), so it is an estimate: good enough
to reject clearly turned faces, not a head-pose tracker. The yaw model treats the nose as sitting
``NOSE_DEPTH`` inter-eye distances in front of the eye line; the pitch model measures how far the nose
sits below the eye line compared with a frontal face (``FRONTAL_NOSE_DROP`` inter-eye distances).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # quality is a ground-floor module: it reads a detected face, it imports no model
    from .models.base import DetectedFace, Detector

NOSE_DEPTH = 0.6
FRONTAL_NOSE_DROP = 0.76
# The region around a face that ``turned_over`` looks at again, turned 180 degrees: the box plus this
# fraction of its longer side on every side.
TURN_MARGIN = 0.3
# Detector scores at or above which a face is taken to be upright without that second look, for the
# detectors whose scores were measured (dlib HOG, 5 or 68 landmarks: every upside-down face it still
# found scored below 0.8, while 265 of 299 upright shared-LFW faces scored 1.0 or more). A detector not
# listed here always gets the second look.
UPRIGHT_SCORE = {"dlib-hog": 1.0, "dlib-hog-68": 1.0}


@dataclass(frozen=True)
class FaceQuality:
    eye_distance: float  # pixels in the original image
    sharpness: float  # variance of the Laplacian of the grey aligned chip (0-255 scale)
    brightness: float  # mean grey level of the chip, 0-255
    contrast: float  # standard deviation of the grey level of the chip
    yaw: float  # degrees, 0 = frontal
    pitch: float
    roll: float
    detector_score: float
    overall: float  # 0..1

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


def _grey(chip: np.ndarray) -> np.ndarray:
    c = chip.astype(np.float32)
    return 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]


def laplacian_variance(grey: np.ndarray) -> float:
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def estimate_pose(face: DetectedFace) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from eye centres and the nose point; roll in (-180, 180].

    Detectors name the eyes by their place in the image (``left_eye`` has the smaller x), so the eye
    line alone cannot tell an upright face from one turned upside down: both give a roll near 0. The
    nose tells them apart: it lies below the eye line of an upright face and above it when the face is
    upside down, and then the face's own "down" is the image's up and the roll is near 180."""
    lx, ly = face.left_eye
    rx, ry = face.right_eye
    dx, dy = rx - lx, ry - ly
    ied = math.hypot(dx, dy)
    if ied < 1e-6:
        return 90.0, 90.0, 0.0
    ux, uy = dx / ied, dy / ied  # along the eye line
    vx, vy = -uy, ux  # perpendicular, pointing down the face if it is upright
    mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0
    nx, ny = face.nose[0] - mx, face.nose[1] - my
    along = (nx * ux + ny * uy) / ied
    across = (nx * vx + ny * vy) / ied
    if across < 0:  # the nose is above the eye line: the face is upside down
        ux, uy, along, across = -ux, -uy, -along, -across
    roll = math.degrees(math.atan2(uy, ux))
    yaw = math.degrees(math.atan2(along, NOSE_DEPTH))
    pitch = math.degrees(math.atan2(FRONTAL_NOSE_DROP - across, NOSE_DEPTH))
    return yaw, pitch, roll


def assess(face: DetectedFace, chip: np.ndarray) -> FaceQuality:
    grey = _grey(chip)
    sharp = laplacian_variance(grey)
    brightness = float(grey.mean())
    contrast = float(grey.std())
    yaw, pitch, roll = estimate_pose(face)
    ied = face.eye_distance
    # Overall: product of soft scores, each 1.0 when comfortably good.
    size_s = min(1.0, ied / 40.0)
    sharp_s = min(1.0, sharp / 60.0)
    expo_s = 1.0 - min(1.0, abs(brightness - 128.0) / 128.0) ** 2
    contrast_s = min(1.0, contrast / 40.0)
    pose_s = max(0.0, math.cos(math.radians(min(90.0, abs(yaw))))) * max(
        0.0, math.cos(math.radians(min(90.0, abs(pitch))))
    )
    overall = size_s * sharp_s * expo_s * contrast_s * pose_s
    return FaceQuality(
        eye_distance=ied,
        sharpness=sharp,
        brightness=brightness,
        contrast=contrast,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        detector_score=face.score,
        overall=overall,
    )


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def turned_over(pixels: np.ndarray, face: DetectedFace, detector: Detector) -> bool:
    """True when ``face`` (found on ``pixels``) is upside down: the detector finds it more clearly in
    the region around it turned 180 degrees than where it was found.

    Needed because landmarks alone cannot say so: dlib's shape predictor starts from the mean face
    shape and refines it, so on an upside-down face it still puts the nose below the eyes (and
    ``estimate_pose`` sees an upright face). Measured on 300 shared LFW photos (every 23rd file from the
    8th): of the 52 faces the detector still found when the photo was turned 180 degrees, 51 scored
    higher turned back (at the same place: boxes overlapping by IoU >= 0.2), and none of the 299
    upright faces scored higher turned over. It costs one more detection on a small region (~18 ms on
    one core) for the 11% of faces that need it with dlib HOG (``UPRIGHT_SCORE``), 3.4 ms per face on
    average, so it is meant for enrollment only."""
    detector = detector.scorer_of(face)  # compare scores of one detector only
    if face.score >= UPRIGHT_SCORE.get(detector.name, math.inf):
        return False
    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = face.box
    margin = TURN_MARGIN * max(x2 - x1, y2 - y1)
    left, top = int(max(0.0, x1 - margin)), int(max(0.0, y1 - margin))
    right, bottom = int(min(float(w), x2 + margin)), int(min(float(h), y2 + margin))
    if right - left < 2 or bottom - top < 2:
        return False
    turned = np.ascontiguousarray(pixels[top:bottom, left:right][::-1, ::-1])
    cw, ch = right - left, bottom - top
    # Where the face's own box lies in the turned region.
    where = (cw - (x2 - left), ch - (y2 - top), cw - (x1 - left), ch - (y1 - top))
    return any(f.score > face.score and _iou(f.box, where) >= 0.2 for f in detector.detect_portrait(turned))


def upside_down(q: FaceQuality) -> FaceQuality:
    """The quality of a face found to be upside down (``turned_over``): its roll turned by 180 degrees,
    so that the enrollment gate refuses it as ``extreme_pose``."""
    roll = q.roll + 180.0 if q.roll <= 0 else q.roll - 180.0
    return replace(q, roll=roll, overall=0.0)


@dataclass(frozen=True)
class QualityGate:
    min_eye_distance: float
    min_sharpness: float
    max_yaw: float
    max_roll: float

    def rejection(self, q: FaceQuality) -> str | None:
        """The named reason this face fails the gate, or None."""
        if q.eye_distance < self.min_eye_distance:
            return "face_too_small"
        if abs(q.yaw) > self.max_yaw or abs(q.roll) > self.max_roll:
            return "extreme_pose"
        if q.sharpness < self.min_sharpness:
            return "blurry"
        return None
