"""The detectors ``bench.detection`` knows by name, each buildable at any score threshold.

Every detector is run twice over FDDB: at its operating threshold (its own default, or
``--score-threshold``) for the operating-point figures, and at a lower *floor* for the ROC. Where the
threshold only filters (greedy NMS by score: a box is only removed by a higher-scoring one), the floor
run's detections above the operating threshold are those of the operating run; the JSON counts the
images where they are not (``images_where_floor_run_differs``: e.g. a detector that takes a second look
when nothing passes its threshold). Detectors without a threshold the bench can set get one run
(``floor`` None), and their ROC ends at the operating point.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facevault.models.base import DetectedFace, Detector
from facevault.models.dlib.models import DlibHogDetector
from facevault.models.packs.manifest import DetectorSpec


def models_dir() -> Path:
    return Path(os.environ.get("FACEVAULT_TEST_MODELS", "../shared/models"))


class FixedUpsampleHog(DlibHogDetector):
    """DlibHogDetector with a fixed number of pyramid upsamplings (bench only)."""

    def __init__(self, upsample: int, adjust_threshold: float = 0.0) -> None:
        super().__init__(adjust_threshold=adjust_threshold)
        self.upsample = upsample

    def _upsample_count(self, pixels: np.ndarray) -> int:
        return self.upsample


class Unavailable(Exception):
    """The detector cannot be built here (a missing model file or module): skipped with this reason."""


@dataclass(frozen=True)
class Kind:
    description: str
    make: Callable[[], Detector]  # at its own default threshold; raises Unavailable
    floor: float | None  # ROC collection threshold; None: the detector's threshold cannot be set
    licence: str = ""


def _onnx(kind: str, file: str, **spec: Any) -> Callable[[], Detector]:
    def make() -> Detector:
        path = models_dir() / file
        if not path.is_file():
            raise Unavailable(f"model file {path} not found (set FACEVAULT_TEST_MODELS)")
        if kind == "yunet":
            from facevault.models.packs.yunet import YunetDetector

            return YunetDetector(path, DetectorSpec(kind="yunet", file=file, **spec), threads=1)
        from facevault.models.packs.scrfd import ScrfdDetector

        return ScrfdDetector(path, DetectorSpec(kind="scrfd", file=file, **spec), threads=1)

    return make


_YUNET = {"mean": 0.0, "std": 1.0, "color": "BGR", "score_threshold": 0.6, "nms_threshold": 0.3}
_SCRFD = {"mean": 127.5, "std": 128.0, "color": "RGB", "score_threshold": 0.5, "nms_threshold": 0.4}


def _mmod() -> Detector:
    try:
        from facevault.models.dlib.mmod import DlibMmodDetector  # type: ignore[import-not-found]
    except ImportError as exc:
        raise Unavailable(f"facevault.models.dlib.mmod.DlibMmodDetector is not importable ({exc})") from exc
    det: Detector = DlibMmodDetector()
    return det


def _default() -> Detector:
    from facevault.models.registry import get_pack

    return get_pack("dlib-resnet-v1").detector


KINDS: dict[str, Kind] = {
    "hog": Kind(
        "dlib HOG, DlibHogDetector defaults (one upsample below 1000 px): the search path",
        DlibHogDetector,
        -1.0,
    ),
    "hog-up0": Kind("dlib HOG, no upsampling", lambda: FixedUpsampleHog(0), -1.0),
    "hog-up2": Kind("dlib HOG, two upsamplings at any size", lambda: FixedUpsampleHog(2), -1.0),
    "yunet": Kind(
        "YuNet 2023mar, fixed 640x640 letterbox",
        _onnx("yunet", "face_detection_yunet_2023mar.onnx", input_size=(640, 640), **_YUNET),
        0.25,
        "MIT",
    ),
    "yunet-dyn": Kind(
        "YuNet (dynamic input), image fitted into 640x640, sides rounded up to 32, never enlarged",
        _onnx("yunet", "yunet_s_dynamic.onnx", input_size=(640, 640), **_YUNET),
        0.25,
        "Apache-2.0",
    ),
    "scrfd-500m": Kind(
        "SCRFD-500MF (det_500m), 640x640 letterbox",
        _onnx("scrfd", "det_500m.onnx", input_size=(640, 640), **_SCRFD),
        0.2,
        "InsightFace non-commercial",
    ),
    "scrfd-2.5g": Kind(
        "SCRFD-2.5GF (det_2.5g), 640x640 letterbox",
        _onnx("scrfd", "det_2.5g.onnx", input_size=(640, 640), **_SCRFD),
        0.2,
        "InsightFace non-commercial",
    ),
    "mmod": Kind("dlib MMOD CNN (facevault.models.dlib.mmod.DlibMmodDetector)", _mmod, -0.5),
    "default": Kind("the detector of the registry's default pack (dlib-resnet-v1)", _default, -1.0),
}


def threshold_of(det: Detector) -> float | None:
    """The detector's own score threshold, where the bench knows how to read it."""
    spec = getattr(det, "spec", None)
    if isinstance(spec, DetectorSpec):
        return spec.score_threshold
    for attr in ("adjust_threshold", "score_threshold", "threshold"):
        value = getattr(det, attr, None)
        if isinstance(value, int | float):
            return float(value)
    return None


def with_threshold(det: Detector, threshold: float) -> Detector:
    """A copy of an unused detector that keeps detections scoring >= ``threshold``."""
    out = copy.copy(det)
    spec = getattr(det, "spec", None)
    if isinstance(spec, DetectorSpec):
        out.spec = dataclasses.replace(spec, score_threshold=threshold)  # type: ignore[attr-defined]
        return out
    for attr in ("adjust_threshold", "score_threshold", "threshold"):
        if isinstance(getattr(det, attr, None), int | float):
            setattr(out, attr, threshold)
            return out
    raise ValueError(f"{type(det).__name__}: no score threshold the bench can set")


def set_threads(det: Detector, threads: int) -> bool:
    """Intra-op threads for a detector that has them (ONNX sessions); False for single-threaded ones."""
    if hasattr(det, "threads"):
        det.threads = threads  # type: ignore[attr-defined]
        return True
    return False


@dataclass(frozen=True)
class Choice:
    """A named detector at a threshold (picklable: worker processes build their own copy)."""

    name: str
    threshold: float | None = None  # None: the detector's own
    threads: int = 1

    def build(self) -> Detector:
        kind = KINDS.get(self.name)
        if kind is None:
            raise Unavailable(f"unknown detector {self.name!r}; known: {', '.join(KINDS)}")
        det = kind.make()
        if self.threshold is not None:
            det = with_threshold(det, self.threshold)
        set_threads(det, self.threads)
        return det


def detect_boxes(det: Detector, pixels: np.ndarray) -> tuple[list[tuple[float, ...]], list[float]]:
    faces: list[DetectedFace] = det.detect(pixels)
    return [tuple(float(v) for v in f.box) for f in faces], [float(f.score) for f in faces]
