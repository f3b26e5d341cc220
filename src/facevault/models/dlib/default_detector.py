"""The default pack's detector: dlib's MMOD CNN for every face, with dlib's HOG as the fast first look for
portraits.

Why (docs/BENCHMARKS.md, shared FDDB folds, IoU 0.3): HOG, the detector before, finds 0.778 of the faces
in real news photos (12 false detections); MMOD upsampled once finds 0.874 (25 false detections). Both
ship with ``face-recognition-models``, and both boxes feed the same 5-point shape predictor, so vectors
stay comparable with every collection enrolled before.

How much MMOD looks, by image size (the work grows with the pixels it scans):

- the image is scanned at twice its size (faces down to ~40 px), but never more than ``PIXEL_BUDGET``
  pixels at the pyramid's first level: a large photo is scanned at the scale that fits the budget (a
  12-megapixel photo, already cut to ``max_detect_side`` by the pipeline, at about 1,100 x 730);
- a very small image (longer side <= ``SMALL_SIDE``, ORL's 92 x 112) is scanned at four times its size.

Portraits (enrollment, ``detect_portrait``): HOG at the image's own scale first (17 ms on an LFW image);
when it finds a face at least ``PORTRAIT_FRACTION`` of the longer side, that is the answer, else MMOD
looks as above. So enrollment keeps its speed and still finds the faces HOG cannot.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cached_property

import numpy as np

from ..base import DetectedFace, Detector
from .mmod import DlibMmodDetector, _as_rect, _round
from .models import PORTRAIT_FRACTION, DlibHogDetector, _dlib

PIXEL_BUDGET = 800_000  # pixels of the first pyramid level (an FDDB photo upsampled once: ~600,000)
SMALL_SIDE = 200
MAX_SCALE = 2.0
SNAP_TO_MAX = 1.75
BY = "found_by_hog"  # in DetectedFace.extra: the portrait look's HOG found this face (a HOG score)
RectScore = tuple[tuple[int, int, int, int], float]


class DefaultDlibDetector(DlibMmodDetector):
    """MMOD for every face (``detect``), HOG first for portraits (``detect_portrait``); see the module."""

    def __init__(self, adjust_threshold: float = 0.0, refine: bool = False) -> None:
        super().__init__(upsample=1, adjust_threshold=adjust_threshold, refine=refine)
        self.name = "dlib-mmod"

    @cached_property
    def _hog(self) -> DlibHogDetector:
        return DlibHogDetector(refine=self.refine)

    def scan_scale(self, pixels: np.ndarray) -> float:
        """How much the image is enlarged (or shrunk) before MMOD scans it."""
        h, w = pixels.shape[:2]
        if max(h, w) <= SMALL_SIDE:
            return 2 * MAX_SCALE
        scale = math.sqrt(PIXEL_BUDGET / max(1, h * w))
        # close to 2x: dlib's own 2x step (its exact boxes; at most ~30% over the budget)
        return MAX_SCALE if scale >= SNAP_TO_MAX else scale

    def _scanned(self, pixels: np.ndarray, threshold: float) -> list[RectScore]:
        scale = self.scan_scale(pixels)
        if scale in (1.0, 2.0, 4.0):  # dlib's own pyramid_up steps: the same boxes as dlib's detector
            return self.run(pixels, int(round(math.log2(scale))), threshold)
        nr, nc = pixels.shape[:2]
        rows, cols = max(2, round(nr * scale)), max(2, round(nc * scale))
        work = np.asarray(_dlib().resize_image(np.ascontiguousarray(pixels), rows, cols))
        boxes, scores = self._run_scaled(work, threshold)
        fx = (nc - 1) / (cols - 1) if nc > 1 else 1.0 / scale  # resize_image aligns corners
        fy = (nr - 1) / (rows - 1) if nr > 1 else 1.0 / scale
        back = _round(boxes.astype(np.float64) * np.array([fx, fy, fx, fy]))
        return [(_as_rect(b), float(s)) for b, s in zip(back, scores, strict=True)]

    @cached_property
    def _mmod(self) -> DlibMmodDetector:
        return DlibMmodDetector(upsample=1, adjust_threshold=self.adjust_threshold, refine=self.refine)

    def detect_portrait(self, pixels: np.ndarray) -> list[DetectedFace]:
        hog = self._hog._detect(pixels, self._hog.adjust_threshold, upsample=0)
        if hog and max(f.height for f in hog) >= PORTRAIT_FRACTION * max(pixels.shape[:2]):
            return [replace(f, extra={**f.extra, BY: 1.0}) for f in hog]
        return self.detect(pixels)

    def scorer_of(self, face: DetectedFace) -> Detector:
        """HOG for the faces its quick look found (HOG scores), MMOD for the others."""
        return self._hog if face.extra.get(BY) else self._mmod

    def _found(self, pixels: np.ndarray, threshold: float, upsample: int | None = None) -> list[RectScore]:
        if upsample is not None:
            return super()._found(pixels, threshold, upsample)
        return self._scanned(pixels, threshold)
