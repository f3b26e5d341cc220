"""Pieces shared by the ONNX detectors of model packs: letterboxing, NMS, 5-point faces, sessions."""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...config import threads_setting
from ..base import DetectedFace, Detector, box_iou
from .manifest import ARCFACE_TEMPLATE_112, DetectorSpec


def default_threads() -> int:
    """``FACEVAULT_THREADS``: the worker processes set it to 1."""
    return threads_setting()


def letterbox(pixels: np.ndarray, width: int, height: int, fill: float = 1.0) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio so the image fits ``fill`` of (width, height); pad right and
    bottom with zeros. Returns (canvas (height, width, 3) uint8, scale of canvas pixels per image pixel)."""
    h, w = pixels.shape[:2]
    scale = min(width / w, height / h) * fill
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    nw, nh = min(nw, width), min(nh, height)
    resized = (
        pixels
        if (nw, nh) == (w, h)
        else np.asarray(Image.fromarray(pixels).resize((nw, nh), Image.Resampling.BILINEAR))
    )
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, nw / w


def to_blob(canvas: np.ndarray, mean: float, std: float, color: str) -> np.ndarray:
    img = canvas[..., ::-1] if color == "BGR" else canvas
    blob = (img.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first (ties keep the lower index)."""
    if len(boxes) == 0:
        return []
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return keep


def face_from_five(box: np.ndarray, score: float, points: np.ndarray, fallback: bool = False) -> DetectedFace:
    """A DetectedFace from a box and 5 points in the ArcFace order (eye, eye, nose, mouth, mouth)."""
    pts = np.asarray(points, dtype=np.float32).reshape(5, 2)
    a, b = (float(pts[0, 0]), float(pts[0, 1])), (float(pts[1, 0]), float(pts[1, 1]))
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    return DetectedFace(
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        score=float(score),
        landmarks=pts,
        left_eye=left,
        right_eye=right,
        nose=(float(pts[2, 0]), float(pts[2, 1])),
        fallback=fallback,
    )


# Detectors trained on faces with context around them score a face that fills the frame low or miss it
# (SCRFD-500M: nothing above 0.1 for a tightly cropped portrait letterboxed into 640x640, 0.87 once the
# portrait fills half of the canvas; YuNet: 0.69 with a box cut at the chin, then 0.95). When the first
# look finds nothing, or a face covering more than LARGE_FACE of the image's area, a second look at the
# image shrunk into PADDED_FILL of the canvas (the rest zero, as InsightFace pads) is merged with the
# first. (SCRFD starts to fail when the face's side passes about 65% of the canvas; LFW's 250x250 crops,
# face area about 20%, get one look.)
LARGE_FACE = 0.3
PADDED_FILL = 0.5
# detect_lenient: the score threshold is scaled by this (evaluation only; see Detector.detect_lenient).
LENIENT_FACTOR = 0.6


class OnnxFaceDetector(Detector):
    """A single-image ONNX face detector with 5 landmarks: subclasses decode the raw outputs."""

    name = "onnx-detector"

    def __init__(self, model_path: Path, spec: DetectorSpec, threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.spec = spec
        self.threads = default_threads() if threads is None else threads

    @cached_property
    def _session(self) -> Any:
        from ..onnx_runtime import make_session

        return make_session(self.model_path, threads=self.threads)

    @cached_property
    def _input(self) -> Any:
        return self._session.get_inputs()[0]

    @cached_property
    def _output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def fixed_input(self) -> tuple[int, int] | None:
        """(width, height) of a network exported for one input size, else None."""
        shape = self._input.shape
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            return int(shape[3]), int(shape[2])
        return None

    def canvas_size(self, pixels: np.ndarray, fill: float = 1.0) -> tuple[int, int]:
        """(width, height) the image is letterboxed into: the network's fixed input size when it has
        one, else the manifest's input size."""
        return self.fixed_input() or self.spec.input_size

    @abstractmethod
    def decode(
        self,
        outputs: list[np.ndarray],
        names: list[str],
        width: int,
        height: int,
        score_threshold: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs -> (boxes (n, 4), scores (n,), landmarks (n, 5, 2)) in canvas pixels, all
        candidates above the score threshold (the manifest's when None), before NMS."""

    def candidates(
        self, pixels: np.ndarray, fill: float = 1.0, score_threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One look: the image letterboxed into ``fill`` of the canvas; (boxes, scores, landmarks) in
        image pixels, before NMS."""
        width, height = self.canvas_size(pixels, fill)
        canvas, scale = letterbox(pixels, width, height, fill)
        blob = to_blob(canvas, self.spec.mean, self.spec.std, self.spec.color)
        outputs = self._session.run(None, {self._input.name: blob})
        boxes, scores, kps = self.decode(outputs, self._output_names, width, height, score_threshold)
        return boxes / scale, scores, kps / scale

    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self.detect_at(pixels, self.spec.score_threshold)

    def detect_lenient(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self.detect_at(pixels, self.spec.score_threshold * LENIENT_FACTOR)

    def detect_at(self, pixels: np.ndarray, score_threshold: float) -> list[DetectedFace]:
        """Faces scoring at least ``score_threshold``, largest first (with a padded second look when
        nothing is found or a face fills the frame, see LARGE_FACE)."""
        boxes, scores, kps = self.candidates(pixels, 1.0, score_threshold)
        h, w = pixels.shape[:2]
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if scores.size == 0 or bool((areas > LARGE_FACE * w * h).any()):
            more = self.candidates(pixels, PADDED_FILL, score_threshold)
            boxes, scores, kps = stack_detections([boxes, more[0]], [scores, more[1]], [kps, more[2]])
        keep = nms(boxes, scores, self.spec.nms_threshold)
        if self.spec.max_faces:
            keep = keep[: self.spec.max_faces]
        faces = []
        for i in keep:
            b = boxes[i]
            box = np.array([max(0.0, b[0]), max(0.0, b[1]), min(float(w), b[2]), min(float(h), b[3])])
            faces.append(face_from_five(box, float(scores[i]), kps[i]))
        faces.sort(key=lambda f: -f.area)
        return faces

    def landmarks_in_box(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> DetectedFace:
        """The landmarks of the detected face that best overlaps the box (the whole image first, then a
        crop around the box grown by half its size); without one, the template's landmarks placed in
        the box. Always marked ``fallback`` (the box was given, not detected)."""
        x1, y1, x2, y2 = box
        h, w = pixels.shape[:2]
        mw, mh = (x2 - x1) * 0.5, (y2 - y1) * 0.5
        cx1, cy1 = int(max(0, x1 - mw)), int(max(0, y1 - mh))
        cx2, cy2 = int(min(w, x2 + mw)), int(min(h, y2 + mh))
        attempts: list[tuple[int, int, np.ndarray]] = [(0, 0, pixels)]
        if cx2 - cx1 >= 8 and cy2 - cy1 >= 8 and (cx2 - cx1, cy2 - cy1) != (w, h):
            attempts.append((cx1, cy1, np.ascontiguousarray(pixels[cy1:cy2, cx1:cx2])))
        for ox, oy, img in attempts:
            shifted = (x1 - ox, y1 - oy, x2 - ox, y2 - oy)
            cands = [(f, box_iou(f.box, shifted)) for f in self.detect(img)]
            cands = [c for c in cands if c[1] >= 0.3]
            if cands:
                f = max(cands, key=lambda c: c[1])[0]
                off = np.array([ox, oy], dtype=np.float32)
                return face_from_five(np.asarray(box), f.score, f.landmarks + off, fallback=True)
        t = np.asarray(ARCFACE_TEMPLATE_112, dtype=np.float32) / 112.0
        pts = np.stack([x1 + t[:, 0] * (x2 - x1), y1 + t[:, 1] * (y2 - y1)], axis=1)
        return face_from_five(np.asarray(box), 0.0, pts, fallback=True)


def stack_detections(
    boxes: list[np.ndarray], scores: list[np.ndarray], kps: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-stride decoded (boxes, scores, 5-point landmarks) joined into three float32 arrays."""
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(kps).astype(np.float32),
    )
