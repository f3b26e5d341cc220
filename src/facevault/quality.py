"""Per-face quality: size, sharpness, exposure, pose from landmarks, detector score, and one overall score.

Pose comes from three points only (two eye centres and the nose), so it is an estimate: good enough
to reject clearly turned faces, not a head-pose tracker. The yaw model treats the nose as sitting
``NOSE_DEPTH`` inter-eye distances in front of the eye line; the pitch model measures how far the nose
sits below the eye line compared with a frontal face (``FRONTAL_NOSE_DROP`` inter-eye distances).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # quality is a ground-floor module: it reads a detected face, it imports no model
    from .models.base import DetectedFace

NOSE_DEPTH = 0.6
FRONTAL_NOSE_DROP = 0.76


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
    """(yaw, pitch, roll) in degrees from eye centres and the nose point."""
    lx, ly = face.left_eye
    rx, ry = face.right_eye
    dx, dy = rx - lx, ry - ly
    ied = math.hypot(dx, dy)
    if ied < 1e-6:
        return 90.0, 90.0, 0.0
    roll = math.degrees(math.atan2(dy, dx))
    ux, uy = dx / ied, dy / ied  # along the eye line
    vx, vy = -uy, ux  # perpendicular, pointing down the face
    mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0
    nx, ny = face.nose[0] - mx, face.nose[1] - my
    along = (nx * ux + ny * uy) / ied
    across = (nx * vx + ny * vy) / ied
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
