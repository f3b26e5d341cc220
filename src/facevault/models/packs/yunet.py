"""YuNet face detector (OpenCV Zoo ``face_detection_yunet_2023mar.onnx``).

The network sees a (1, 3, H, W) blob of raw BGR values (0-255, no mean or scaling), H and W multiples of
32, and answers for each stride s of 8, 16 and 32 four tensors over the (H/s) x (W/s) grid, one
prediction per cell in row-major order: ``cls_s`` and ``obj_s`` (1, N, 1) probabilities, ``bbox_s``
(1, N, 4) and ``kps_s`` (1, N, 10). The face score is sqrt(cls x obj); for the cell at (row r, column c)
the box centre is ((c + b0) s, (r + b1) s), its size (exp(b2) s, exp(b3) s), and landmark k is at
((c + o_2k) s, (r + o_2k+1) s). Landmarks come in the order right eye, left eye, nose tip, right and
left mouth corners of the person, i.e. the first point has the smaller x in the image, as in ArcFace.
"""

from __future__ import annotations

import re

import numpy as np

from ...errors import ModelError
from .common import OnnxFaceDetector, stack_detections

STRIDES = (8, 16, 32)
_NAME = re.compile(r"^(cls|obj|bbox|kps)_(\d+)$")


def group_outputs(
    outputs: list[np.ndarray], names: list[str], strides: tuple[int, ...] = STRIDES
) -> dict[int, dict[str, np.ndarray]]:
    """{stride: {"cls", "obj", "bbox", "kps"}} by output name (``cls_8`` ...) or, for exports without
    those names, by position (cls x3, obj x3, bbox x3, kps x3, strides ascending)."""
    grouped: dict[int, dict[str, np.ndarray]] = {s: {} for s in strides}
    named = [_NAME.match(n) for n in names]
    if all(named) and len(named) == 4 * len(strides):
        for m, out in zip(named, outputs, strict=True):
            assert m is not None
            grouped.setdefault(int(m.group(2)), {})[m.group(1)] = np.asarray(out)
    elif len(outputs) == 4 * len(strides):
        for i, out in enumerate(outputs):
            kind = ("cls", "obj", "bbox", "kps")[i // len(strides)]
            grouped[strides[i % len(strides)]][kind] = np.asarray(out)
    else:
        raise ModelError(f"YuNet: expected {4 * len(strides)} outputs, got {len(outputs)}")
    for s in strides:
        if set(grouped.get(s, {})) != {"cls", "obj", "bbox", "kps"}:
            raise ModelError(f"YuNet: stride {s} outputs are incomplete")
        grouped[s] = {k: v.reshape(v.shape[-2], v.shape[-1]) for k, v in grouped[s].items()}
    return grouped


def decode_yunet(
    outputs: list[np.ndarray],
    names: list[str],
    width: int,
    height: int,
    score_threshold: float,
    strides: tuple[int, ...] = STRIDES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (n, 4), scores (n,), landmarks (n, 5, 2)) above ``score_threshold``, in input pixels."""
    grouped = group_outputs(outputs, names, strides)
    all_boxes, all_scores, all_kps = [], [], []
    for s in strides:
        g = grouped[s]
        rows, cols = height // s, width // s
        if g["cls"].shape[0] != rows * cols:
            raise ModelError(f"YuNet: stride {s} has {g['cls'].shape[0]} cells, expected {rows * cols}")
        score = np.sqrt(np.clip(g["cls"][:, 0], 0, 1) * np.clip(g["obj"][:, 0], 0, 1))
        sel = np.nonzero(score >= score_threshold)[0]
        if sel.size == 0:
            continue
        cell = np.stack([sel % cols, sel // cols], axis=1).astype(np.float32)  # (c, r)
        b = g["bbox"][sel]
        centre = (cell + b[:, :2]) * s
        size = np.exp(b[:, 2:4]) * s
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        kps = (g["kps"][sel].reshape(-1, 5, 2) + cell[:, None, :]) * s
        all_boxes.append(boxes)
        all_scores.append(score[sel])
        all_kps.append(kps)
    return stack_detections(all_boxes, all_scores, all_kps)


class YunetDetector(OnnxFaceDetector):
    name = "yunet"

    def canvas_size(self, pixels: np.ndarray, fill: float = 1.0) -> tuple[int, int]:
        """A fixed-size export gets its own size; a dynamic one gets the image fitted into the manifest's
        input size (never enlarged), over ``fill`` of a canvas rounded up to multiples of 32."""
        fixed = self.fixed_input()
        if fixed:
            return fixed
        h, w = pixels.shape[:2]
        mw, mh = self.spec.input_size
        scale = min(1.0, mw / w, mh / h) / fill
        return int(np.ceil(w * scale / 32.0)) * 32, int(np.ceil(h * scale / 32.0)) * 32

    def decode(
        self,
        outputs: list[np.ndarray],
        names: list[str],
        width: int,
        height: int,
        score_threshold: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        threshold = self.spec.score_threshold if score_threshold is None else score_threshold
        return decode_yunet(outputs, names, width, height, threshold)
