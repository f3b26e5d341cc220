"""The two small interfaces every network sits behind, and the pack that ties them to one model id."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DetectedFace:
    """One face found in an image, in that image's pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (K, 2) float32, the detector's own landmark set
    left_eye: tuple[float, float]  # eye centre with the smaller x in the image
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    fallback: bool = False  # True when the box was assumed, not detected (evaluation only)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def eye_distance(self) -> float:
        return math.dist(self.left_eye, self.right_eye)

    def box_list(self) -> list[float]:
        return [round(float(v), 1) for v in self.box]


class Detector(ABC):
    """Finds faces and their landmarks."""

    name: str

    @abstractmethod
    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        """All faces in an RGB uint8 image."""

    def detect_portrait(self, pixels: np.ndarray) -> list[DetectedFace]:
        """Faces in a photo meant to show one person large (enrollment): a detector may skip its costly
        search for small faces when a large one is found. Defaults to ``detect``."""
        return self.detect(pixels)

    def detect_lenient(self, pixels: np.ndarray) -> list[DetectedFace]:
        """A second, less strict look, for protocols that know a face is present (evaluation only: it
        trades false detections for recall). Defaults to ``detect``."""
        return self.detect(pixels)

    @abstractmethod
    def landmarks_in_box(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> DetectedFace:
        """Landmarks for a box given by the caller (used when a protocol fixes the face position)."""

    def scorer_of(self, face: DetectedFace) -> Detector:
        """The detector whose scores ``face`` carries (a detector made of two answers with the one that
        found it), for checks that compare scores, such as ``quality.turned_over``."""
        return self


class Embedder(ABC):
    """Aligns a face to the network's template and turns aligned chips into vectors."""

    model_id: str
    dim: int

    @abstractmethod
    def align(self, pixels: np.ndarray, face: DetectedFace) -> np.ndarray:
        """An aligned chip (H, W, 3) uint8 for this network."""

    @abstractmethod
    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Raw (n, dim) float32 embeddings, one per chip, in order."""

    def align_views(self, pixels: np.ndarray, face: DetectedFace, augment: bool) -> list[np.ndarray]:
        """Chips whose embeddings are averaged (test-time augmentation); the first is the canonical chip.
        Networks without extra views return just that one."""
        return [self.align(pixels, face)]


@dataclass
class ModelPack:
    """A detector and an embedder under one model id; every stored vector carries this id."""

    model_id: str
    detector: Detector
    embedder: Embedder
    description: str = ""

    @property
    def dim(self) -> int:
        return self.embedder.dim


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
