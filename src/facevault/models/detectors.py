"""Which detector finds the faces for a pack's recognizer: the pack's own, or another one by name.

A pack's vectors depend on its alignment, not on which detector found the face, as long as the landmarks
that drive the alignment are the pack's own kind:

- **dlib packs** (``dlib-resnet-v1``...) align on dlib's 5- or 68-point landmarks. Any detector's boxes
  can feed them: the pack's own shape predictor is run on each box (``BoxesThenLandmarks``), so the chip,
  and therefore the vector, is made exactly as for the pack's own detector's boxes.
- **five-point packs** (ArcFace-style: InsightFace, SFace, MobileFaceNet) align on the detector's own five
  points (eye centres, nose tip, mouth corners). Only detectors that give those (YuNet, SCRFD) can feed
  them; dlib's detectors give other points and are refused.

Names: ``dlib-hog`` and ``dlib-mmod`` are built in (their files come with ``face-recognition-models``);
every installed pack lends its detector under the pack's name (``facevault models fetch yunet``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FaceVaultError
from .base import DetectedFace, Detector, ModelPack
from .dlib.models import DlibHogDetector

BUILTIN_DETECTORS = ("dlib-hog", "dlib-mmod")
DLIB_LANDMARKS = "dlib"
FIVE_POINT = "five-point"


@dataclass(frozen=True)
class DetectorChoice:
    """One detector a vault can use, as ``models list`` and ``doctor`` show it."""

    name: str
    kind: str
    landmarks: str  # DLIB_LANDMARKS or FIVE_POINT
    source: str  # "built-in" or the installed pack's folder
    license: str
    commercial_use: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def landmark_kind(detector: Detector) -> str:
    return DLIB_LANDMARKS if isinstance(detector, DlibHogDetector) else FIVE_POINT


def available_detectors(models_root: Path) -> list[DetectorChoice]:
    """The built-in detectors, then every detector installed in ``models_root`` (reads manifests only)."""
    from .packs.detectors import installed_detectors

    lic = "CC0-1.0 (dlib models, per face-recognition-models)"
    out = [
        DetectorChoice("dlib-hog", "dlib-hog", DLIB_LANDMARKS, "built-in", lic, True),
        DetectorChoice("dlib-mmod", "dlib-mmod", DLIB_LANDMARKS, "built-in", lic, True),
    ]
    seen = set(BUILTIN_DETECTORS)
    for d in installed_detectors(models_root):
        if d.name not in seen:
            seen.add(d.name)
            out.append(
                DetectorChoice(d.name, d.kind, FIVE_POINT, str(d.folder), d.license_id, d.commercial_use)
            )
    return out


def builtin_detector(name: str) -> Detector:
    from .dlib.mmod import DlibMmodDetector

    if name == "dlib-hog":
        return DlibHogDetector()
    if name == "dlib-mmod":
        return DlibMmodDetector()
    raise ConfigError(f"unknown built-in detector {name!r}")


@cache
def _named(name: str, models_root: Path) -> Detector:
    """One detector object per name and models folder per process (its network loads on first use)."""
    if name in BUILTIN_DETECTORS:
        return builtin_detector(name)
    from .packs.detectors import load_detector

    try:
        return load_detector(name, models_root)
    except FaceVaultError as exc:
        known = ", ".join(c.name for c in available_detectors(models_root))
        raise ConfigError(f"detector {name!r} is not usable: {exc.message} (available: {known})") from exc


def with_detector(pack: ModelPack, name: str | None, models_root: Path) -> ModelPack:
    """``pack`` finding faces with the detector ``name`` (None or the pack's own: ``pack`` itself)."""
    if not name or name == pack.detector.name:
        return pack
    other = _named(name, models_root)
    own = landmark_kind(pack.detector)
    if own == DLIB_LANDMARKS:
        detector: Detector = (
            other
            if landmark_kind(other) == DLIB_LANDMARKS and _same_points(pack, other)
            else (BoxesThenLandmarks(other, pack.detector))
        )
    elif landmark_kind(other) == FIVE_POINT:
        detector = other
    else:
        raise ConfigError(
            f"{pack.model_id} aligns on five points (eyes, nose, mouth corners) that {name} does not give; "
            "use a detector that does (e.g. yunet, scrfd-500m) or the pack's own"
        )
    return replace(pack, detector=detector)


def _same_points(pack: ModelPack, other: Detector) -> bool:
    """A dlib detector of the same landmark set (5 or 68) as the pack's own can be used as it is."""
    mine = pack.detector
    return (
        isinstance(other, DlibHogDetector)
        and isinstance(mine, DlibHogDetector)
        and (other.landmarks == mine.landmarks and other.refine == mine.refine)
    )


class BoxesThenLandmarks(Detector):
    """Boxes (and scores) from ``boxes``, landmarks from ``landmarks.landmarks_in_box`` on each box: a
    dlib pack's chips from another detector's faces."""

    def __init__(self, boxes: Detector, landmarks: Detector) -> None:
        self.boxes = boxes
        self.landmarks = landmarks
        self.name = boxes.name

    def _with_landmarks(self, pixels: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        out = []
        for f in faces:
            g = self.landmarks.landmarks_in_box(pixels, f.box)
            out.append(replace(g, box=f.box, score=f.score, fallback=False, extra=dict(f.extra)))
        return out

    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._with_landmarks(pixels, self.boxes.detect(pixels))

    def detect_portrait(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._with_landmarks(pixels, self.boxes.detect_portrait(pixels))

    def detect_lenient(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._with_landmarks(pixels, self.boxes.detect_lenient(pixels))

    def landmarks_in_box(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> DetectedFace:
        return self.landmarks.landmarks_in_box(pixels, box)
