"""SCRFD face detectors (InsightFace ``det_10g.onnx``, ``det_2.5g.onnx``, ``det_500m.onnx``,
``scrfd_*_bnkps.onnx``).

The network sees a (1, 3, H, W) blob of ``(RGB - 127.5) / 128`` and answers, for each stride s of
8, 16 and 32, three tensors over the (H/s) x (W/s) grid with A anchors per cell (A = 2 for the released
models): scores (N, 1) already through a sigmoid, box distances (N, 4) and 5 landmark offsets (N, 10),
each in units of s and with N = (H/s)(W/s)A, rows ordered cell by cell (row-major) and anchor by anchor
within a cell. Some exports add a leading batch axis of 1. The anchor of cell (row r, column c) sits at
(c s, r s); a box is (cx - d0 s, cy - d1 s, cx + d2 s, cy + d3 s) and landmark k is
(cx + o_2k s, cy + o_2k+1 s). Outputs are told apart by their last axis (1, 4, 10) and their length
(which gives the stride), not by their names, which differ between exports.
"""

from __future__ import annotations

import numpy as np

from ...errors import ModelError
from .common import OnnxFaceDetector, stack_detections

STRIDES = (8, 16, 32)


def anchor_centres(width: int, height: int, stride: int, anchors: int) -> np.ndarray:
    """(rows x cols x anchors, 2) anchor centres (x, y) in the order SCRFD emits its rows."""
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def group_outputs(
    outputs: list[np.ndarray], width: int, height: int, strides: tuple[int, ...] = STRIDES
) -> dict[int, dict[str, np.ndarray]]:
    """{stride: {"score": (N, 1), "bbox": (N, 4), "kps": (N, 10)}} from the raw outputs in any order."""
    kinds = {1: "score", 4: "bbox", 10: "kps"}
    cells = {s: (height // s) * (width // s) for s in strides}
    grouped: dict[int, dict[str, np.ndarray]] = {s: {} for s in strides}
    for out in outputs:
        arr = np.asarray(out)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2 or arr.shape[1] not in kinds:
            raise ModelError(f"SCRFD: unexpected output shape {np.asarray(out).shape}")
        n = arr.shape[0]
        matches = [s for s in strides if cells[s] and n % cells[s] == 0 and n // cells[s] in (1, 2, 3, 4)]
        # The anchor count is the same on every level; the largest matching grid is ambiguous only
        # for degenerate inputs, so prefer the stride whose anchor count is the smallest.
        if not matches:
            raise ModelError(f"SCRFD: output of length {n} fits no stride for a {width}x{height} input")
        stride = min(matches, key=lambda s: n // cells[s])
        grouped[stride][kinds[arr.shape[1]]] = arr
    for s, g in grouped.items():
        if "score" not in g or "bbox" not in g:
            raise ModelError(f"SCRFD: stride {s} lacks score or box outputs")
        if "kps" not in g:
            raise ModelError("SCRFD: this model has no landmark outputs (use a *_kps / *_bnkps model)")
    return grouped


def decode_scrfd(
    outputs: list[np.ndarray],
    width: int,
    height: int,
    score_threshold: float,
    strides: tuple[int, ...] = STRIDES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (n, 4), scores (n,), landmarks (n, 5, 2)) above ``score_threshold``, in input pixels."""
    grouped = group_outputs(outputs, width, height, strides)
    all_boxes, all_scores, all_kps = [], [], []
    for stride in strides:
        g = grouped[stride]
        scores = g["score"][:, 0]
        anchors = scores.shape[0] // ((height // stride) * (width // stride))
        centres = anchor_centres(width, height, stride, anchors)
        sel = np.nonzero(scores >= score_threshold)[0]
        if sel.size == 0:
            continue
        c = centres[sel]
        d = g["bbox"][sel] * stride
        boxes = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1)
        k = g["kps"][sel].reshape(-1, 5, 2) * stride + c[:, None, :]
        all_boxes.append(boxes)
        all_scores.append(scores[sel])
        all_kps.append(k)
    return stack_detections(all_boxes, all_scores, all_kps)


class ScrfdDetector(OnnxFaceDetector):
    name = "scrfd"

    def decode(
        self,
        outputs: list[np.ndarray],
        names: list[str],
        width: int,
        height: int,
        score_threshold: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        threshold = self.spec.score_threshold if score_threshold is None else score_threshold
        return decode_scrfd(outputs, width, height, threshold)
