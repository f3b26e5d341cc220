"""dlib's MMOD CNN face detector, converted to ONNX (``mmod_convert``) and run by ONNX Runtime, with
dlib's 5-point (or 68-point) landmarks on each box.

It reproduces ``dlib.cnn_face_detection_model_v1(path)(img, upsample)`` step by step:

1. ``upsample`` times, ``pyramid_up`` (bilinear 2x, dlib's own ``resize_image``);
2. the input layer: a tiled image pyramid (each level 5/6 of the previous one, bilinear, tiles laid out
   as ``compute_tiled_image_pyramid_details`` does), in units of ``(pixel - mean) / 256``, 0 between tiles;
3. the convolutions (one ONNX Runtime call on the whole tiled image);
4. every cell scoring above ``adjust_threshold`` becomes the detector window centred on
   ``stride * cell + offset``, mapped back from its pyramid tile to the image (``pyramid_down<6>``'s
   ``point_up``) and rounded as dlib rounds;
5. greedy non-max suppression by score with the file's overlap rule (intersection over the two boxes'
   bounding hull, or share of either box covered);
6. the boxes mapped back through the upsampling (``pyramid_down<2>``'s ``point_down``).

The window is 80x80 pixels: without upsampling, faces under about 80 px are not found; each upsample
step halves that and costs about 4x the time.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ...config import threads_setting
from ...errors import ModelError
from ..base import DetectedFace
from .mmod_convert import CONFIG_KEY, MmodConfig, converted_mmod_path, read_config
from .models import (
    LENIENT_THRESHOLD,
    PORTRAIT_FRACTION,
    DlibHogDetector,
    _dlib,
    _face_from_points,
    _GreyViews,
    _model_files,
    model_cache_dir,
)

# The tiled pyramid stops at levels shorter than this (dlib's min_height).
_MIN_LEVEL_HEIGHT = 5
# The smallest tiled image the three unpadded 5x5 stride-2 convolutions turn into one cell (29 -> 13 -> 5
# -> 1); smaller inputs (images of a few pixels) have no cells and no detections.
_MIN_INPUT = 29
Rect = tuple[int, int, int, int]  # dlib rectangle: left, top, right, bottom (inclusive)


def mmod_model_path() -> Path:
    """The converted detector in the model cache (converted from face-recognition-models on first use)."""
    return converted_mmod_path(Path(_model_files().cnn_face_detector_model_location()), model_cache_dir())


# --------------------------------------------------------------------------------------------------
# The tiled pyramid


def pyramid_layout(nr: int, nc: int, cfg: MmodConfig) -> tuple[list[Rect], int, int]:
    """Where each pyramid level sits in the tiled image, and the tiled image's rows and columns.

    The first level (the image) runs down the left column with the next ones below it until the
    remaining levels fit beside them; those are stacked bottom-up along the right edge."""
    rate = (cfg.pyramid_down - 1.0) / cfg.pyramid_down
    pad, outer = cfg.pyramid_padding, cfg.pyramid_outer_padding
    if nr * nc == 0:
        return [], 0, 0
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_HEIGHT:
            break
        sizes.append((nc, nr))
    w0, h0 = sizes[0]
    total_height = sum(h + pad for _, h in sizes) - 2 * pad
    height, prev_width = 0, 0
    for w, h in sizes:
        if w <= w0 - prev_width - pad and (height - h0) * 2 >= total_height - h0:
            break
        height += h + pad
        prev_width = w
    height -= pad
    rects: list[Rect] = []
    y = outer
    while y < height + outer and len(rects) < len(sizes):
        w, h = sizes[len(rects)]
        rects.append((outer, y, outer + w - 1, y + h - 1))
        y += h + pad
    y -= pad
    first = rects[0]
    while len(rects) < len(sizes):
        w, h = sizes[len(rects)]
        rect = (outer + w0 - w, y - h, outer + w0 - 1, y - 1)
        if _intersects(rect, first):
            break
        rects.append(rect)
        y -= h + pad
    return rects, height + 2 * outer, w0 + 2 * outer


def _intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def _resize_bilinear(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of a (C, H, W) float32 array with corners aligned, as dlib's
    ``tt::resize_bilinear`` makes each pyramid level (dlib's own ``resize_image`` per channel: the
    same scores as dlib's to ~1e-6, 10x faster than numpy)."""
    resize = _dlib().resize_image
    return np.stack([np.asarray(resize(np.ascontiguousarray(c), rows, cols)) for c in src])


def build_pyramid(pixels: np.ndarray, cfg: MmodConfig) -> tuple[np.ndarray, list[Rect]]:
    """The network input for one RGB image: (1, 3, R, C) float32, and the level rectangles."""
    nr, nc = pixels.shape[:2]
    rects, rows, cols = pyramid_layout(nr, nc, cfg)
    canvas = np.zeros((3, rows, cols), dtype=np.float32)
    if not rects:
        return canvas[None], rects
    mean = np.asarray(cfg.mean_rgb, dtype=np.float32).reshape(3, 1, 1)
    level = (np.moveaxis(pixels, 2, 0).astype(np.float32) - mean) / np.float32(256.0)
    for i, (left, top, right, bottom) in enumerate(rects):
        if i:
            level = _resize_bilinear(level, bottom - top + 1, right - left + 1)
        canvas[:, top : bottom + 1, left : right + 1] = level
    return canvas[None], rects


# --------------------------------------------------------------------------------------------------
# From scores to boxes


def _round(v: np.ndarray) -> np.ndarray:
    """dlib's drectangle -> rectangle conversion: floor(v + 0.5)."""
    return np.floor(v + 0.5).astype(np.int64)


def _nearest_level(rects: list[Rect], px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """dlib's ``nearest_rect``: the first level containing the point, else the closest one."""
    r = np.asarray(rects, dtype=np.float64)  # (L, 4)
    dx = np.maximum(np.maximum(r[None, :, 0] - px[:, None], px[:, None] - r[None, :, 2]), 0)
    dy = np.maximum(np.maximum(r[None, :, 1] - py[:, None], py[:, None] - r[None, :, 3]), 0)
    return np.argmin(np.hypot(dx, dy), axis=1)  # 0 for containing levels; argmin takes the first


def decode(
    scores: np.ndarray, rects: list[Rect], cfg: MmodConfig, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cells above ``threshold`` as integer image rectangles (n, 4) and their scores, best first."""
    boxes, confs = [], []
    rate = cfg.pyramid_down / (cfg.pyramid_down - 1.0)
    for k, (ww, wh, _label) in enumerate(cfg.detector_windows):
        ys, xs = np.nonzero(scores[k] > threshold)
        if not len(ys):
            continue
        px = xs.astype(np.float64) * cfg.cell_stride + cfg.cell_offset
        py = ys.astype(np.float64) * cfg.cell_stride + cfg.cell_offset
        level = _nearest_level(rects, _round(px).astype(np.float64), _round(py).astype(np.float64))
        origin = np.asarray(rects, dtype=np.float64)[level, :2]
        half_w, half_h = (ww - 1) / 2, (wh - 1) / 2
        corners = np.stack(
            [
                px - half_w - origin[:, 0],
                py - half_h - origin[:, 1],
                px + half_w - origin[:, 0],
                py + half_h - origin[:, 1],
            ],
            axis=1,
        )
        for n in range(int(level.max()) + 1):  # point_up, applied `level` times
            up = level > n
            corners[up] = corners[up] * rate + 0.3
        boxes.append(_round(corners))
        confs.append(scores[k][ys, xs].astype(np.float64))
    if not boxes:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0)
    all_boxes, all_conf = np.concatenate(boxes), np.concatenate(confs)
    order = np.argsort(-all_conf, kind="stable")
    return all_boxes[order], all_conf[order]


def _area(r: np.ndarray) -> np.ndarray:
    return np.maximum(r[..., 2] - r[..., 0] + 1, 0) * np.maximum(r[..., 3] - r[..., 1] + 1, 0)


def suppress(boxes: np.ndarray, cfg: MmodConfig) -> list[int]:
    """Greedy non-max suppression in score order with dlib's ``test_box_overlap``: a box is dropped when
    it overlaps a kept one by more than ``nms_iou`` of their bounding hull, or covers / is covered by more
    than ``nms_covered`` of either."""
    kept: list[int] = []
    for i in range(len(boxes)):
        if kept:
            a = boxes[i]
            b = boxes[kept]
            inter = np.stack(
                [
                    np.maximum(a[0], b[:, 0]),
                    np.maximum(a[1], b[:, 1]),
                    np.minimum(a[2], b[:, 2]),
                    np.minimum(a[3], b[:, 3]),
                ],
                axis=1,
            )
            inner = _area(inter).astype(np.float64)
            hull = np.stack(
                [
                    np.minimum(a[0], b[:, 0]),
                    np.minimum(a[1], b[:, 1]),
                    np.maximum(a[2], b[:, 2]),
                    np.maximum(a[3], b[:, 3]),
                ],
                axis=1,
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                hit = (inner > 0) & (
                    (inner / _area(hull) > cfg.nms_iou)
                    | (inner / _area(a) > cfg.nms_covered)
                    | (inner / _area(b) > cfg.nms_covered)
                )
            if hit.any():
                continue
        kept.append(i)
    return kept


def _pyramid_up_rows_cols(nr: int, nc: int) -> tuple[int, int]:
    """Size of dlib's ``pyramid_up`` with ``pyramid_down<2>``: its ``rect_up`` of the image rectangle,
    with ``point_up(p) = (p + (1.25, 0.75)) * 2``, rounded."""
    right = math.floor((nc - 1 + 1.25) * 2 + 0.5)
    bottom = math.floor((nr - 1 + 0.75) * 2 + 0.5)
    return bottom + 1, right + 1


def _rect_down(boxes: np.ndarray, levels: int) -> np.ndarray:
    """``pyramid_down<2>::rect_down``: ``point_down(p) = p / 2 - (1.25, 0.75)`` per level, then rounded."""
    out = boxes.astype(np.float64)
    shift = np.array([1.25, 0.75, 1.25, 0.75])
    for _ in range(levels):
        out = out / 2.0 - shift
    return _round(out)


# --------------------------------------------------------------------------------------------------
# The detector


class DlibMmodDetector(DlibHogDetector):
    """dlib's CNN (MMOD) face detector run by ONNX Runtime; the same boxes and scores as
    ``dlib.cnn_face_detection_model_v1``, in a fraction of the time.

    ``upsample``: the number of 2x upsampling steps (dlib's ``upsample_num_times``), or ``None`` to let
    ``min_face`` decide: the image is scaled so that a face of ``min_face`` pixels fills the 80 px window
    (never scaled down). ``adjust_threshold``: added to dlib's score threshold of 0. ``landmarks`` and
    ``refine``: as for ``DlibHogDetector``, whose shape predictor and ``landmarks_in_box`` this reuses.

    Shared FDDB folds (1,408 images, 2,532 faces; greedy one-to-one matching at IoU >= 0.3): upsample 1
    finds 0.874 of the faces with 25 false detections at threshold 0 (0.887 / 40 at -0.4), upsample 0
    0.739 / 14, for about 4x the time of the HOG search path (8 GMAC per 400x370 image at upsample 1)."""

    def __init__(
        self,
        upsample: int | None = 1,
        adjust_threshold: float = 0.0,
        min_face: int | None = None,
        landmarks: int = 5,
        refine: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(
            upsample_below=0, adjust_threshold=adjust_threshold, landmarks=landmarks, refine=refine
        )
        if upsample is None and min_face is None:
            raise ModelError("DlibMmodDetector needs upsample or min_face")
        if upsample is not None and upsample < 0:
            raise ModelError(f"upsample must be >= 0, got {upsample}")
        if min_face is not None and min_face <= 0:
            raise ModelError(f"min_face must be > 0, got {min_face}")
        self.upsample = upsample
        self.min_face = min_face
        self.threads = threads_setting() if threads is None else threads
        self.name = "dlib-mmod" if landmarks == 5 else "dlib-mmod-68"

    @cached_property
    def _session(self) -> Any:
        from ..onnx_runtime import make_session

        return make_session(self.model_path, threads=self.threads)

    @cached_property
    def model_path(self) -> Path:
        return mmod_model_path()

    @cached_property
    def config(self) -> MmodConfig:
        """The detector options the converter stored in the model, read from the running session's
        metadata (``read_config`` would import onnx only to read them)."""
        meta = self._session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY in meta:
            return MmodConfig.from_json(meta[CONFIG_KEY])
        return read_config(self.model_path)

    # -- the raw detector ---------------------------------------------------------------------------

    def run(self, pixels: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[tuple[Rect, float]]:
        """dlib's rectangles and confidences for ``upsample`` 2x steps, best first (what
        ``cnn_face_detection_model_v1(path)(pixels, upsample)`` returns when ``threshold`` is 0)."""
        pixels = _as_rgb(pixels)
        work = pixels
        if upsample:
            dlib = _dlib()
            for _ in range(upsample):
                rows, cols = _pyramid_up_rows_cols(*work.shape[:2])
                work = np.asarray(dlib.resize_image(np.ascontiguousarray(work), rows, cols))
        boxes, scores = self._run_scaled(work, threshold)
        return [(_as_rect(b), float(s)) for b, s in zip(_rect_down(boxes, upsample), scores, strict=True)]

    def _run_scaled(self, work: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        tensor, rects = build_pyramid(work, cfg)
        if not rects or min(tensor.shape[2:]) < _MIN_INPUT:
            return np.zeros((0, 4), dtype=np.int64), np.zeros(0)
        scores = self._session.run(["score"], {"pyramid": tensor})[0][0]
        boxes, confs = decode(scores, rects, cfg, threshold)
        keep = suppress(boxes, cfg)
        return boxes[keep], confs[keep]

    def _run_min_face(self, pixels: np.ndarray, threshold: float) -> list[tuple[Rect, float]]:
        window = min(min(w, h) for w, h, _ in self.config.detector_windows)
        scale = max(1.0, window / float(self.min_face or window))
        nr, nc = pixels.shape[:2]
        if scale == 1.0:
            boxes, scores = self._run_scaled(pixels, threshold)
            return [(_as_rect(b), float(s)) for b, s in zip(boxes, scores, strict=True)]
        rows, cols = max(2, round(nr * scale)), max(2, round(nc * scale))
        work = np.asarray(_dlib().resize_image(np.ascontiguousarray(pixels), rows, cols))
        boxes, scores = self._run_scaled(work, threshold)
        # resize_image aligns corners: x_out = x_in * (cols - 1) / (nc - 1)
        fx = (nc - 1) / (cols - 1) if nc > 1 else 1.0 / scale
        fy = (nr - 1) / (rows - 1) if nr > 1 else 1.0 / scale
        back = _round(boxes.astype(np.float64) * np.array([fx, fy, fx, fy]))
        return [(_as_rect(b), float(s)) for b, s in zip(back, scores, strict=True)]

    def _found(
        self, pixels: np.ndarray, threshold: float, upsample: int | None = None
    ) -> list[tuple[Rect, float]]:
        """dlib's rectangles and scores at ``upsample`` steps (default: the detector's own rule)."""
        if upsample is not None:
            return self.run(pixels, upsample, threshold)
        if self.upsample is not None:
            return self.run(pixels, self.upsample, threshold)
        return self._run_min_face(pixels, threshold)

    # -- the Detector interface ---------------------------------------------------------------------

    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._detect(pixels, self.adjust_threshold)

    def detect_portrait(self, pixels: np.ndarray) -> list[DetectedFace]:
        """At the image's own scale first; upsample only when no face is found or the largest is smaller
        than ``PORTRAIT_FRACTION`` of the longer side."""
        faces = self._detect(pixels, self.adjust_threshold, upsample=0)
        if faces and max(f.height for f in faces) >= PORTRAIT_FRACTION * max(pixels.shape[:2]):
            return faces
        if self.upsample == 0 and self.min_face is None:
            return faces
        return self._detect(pixels, self.adjust_threshold)

    def detect_lenient(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._detect(pixels, self.adjust_threshold + LENIENT_THRESHOLD)

    def _detect(
        self, pixels: np.ndarray, adjust_threshold: float, upsample: int | None = None
    ) -> list[DetectedFace]:
        pixels = _as_rgb(pixels)
        found = self._found(pixels, adjust_threshold, upsample)
        if not found:
            return []
        dlib = _dlib()
        h, w = pixels.shape[:2]
        views = _GreyViews(pixels)
        faces = []
        for (left, top, right, bottom), score in found:
            rect = dlib.rectangle(left, top, right, bottom)
            box = (
                float(max(0, left)),
                float(max(0, top)),
                float(min(w, right + 1)),
                float(min(h, bottom + 1)),
            )
            faces.append(_face_from_points(self._landmarks(pixels, rect, views), box, score))
        faces.sort(key=lambda f: -f.area)
        return faces


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ModelError(f"expected an RGB uint8 image, got {pixels.dtype} {pixels.shape}")
    return pixels


def _as_rect(b: np.ndarray) -> Rect:
    return (int(b[0]), int(b[1]), int(b[2]), int(b[3]))
