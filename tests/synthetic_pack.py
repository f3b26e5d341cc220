"""Tiny ONNX graphs with the same input/output names, shapes and conventions as the real pack models,
for tests, where the real weights cannot be downloaded (test-only: nothing under src/ uses them). They
recognise nobody.

The detectors respond to bright image regions: each stride-32 cell (other strides are switched off)
scores sigmoid(k (mean normalised brightness - 0.5)), so a bright 32x32 square aligned to the grid is one
"face", with a box and landmarks at fixed offsets from its anchor, set by the caller. The recognizers are
average pooling followed by a random linear map, so different chips give different vectors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facevault.models.packs.manifest import sha256_file

# Landmark offsets from the anchor, in stride units (eye, eye, nose, mouth, mouth), frontal.
DEFAULT_KPS = ((-0.42, -0.2), (0.42, -0.2), (0.0, 0.15), (-0.25, 0.45), (0.25, 0.45))
DEFAULT_DIST = (0.5, 0.5, 0.5, 0.75)  # SCRFD box distances (left, top, right, bottom), stride units


def _onnx() -> Any:
    import onnx

    return onnx


def _save(graph: Any, path: Path) -> Path:
    onnx = _onnx()
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _const(name: str, arr: np.ndarray) -> Any:
    return _onnx().numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _ints(name: str, values: Sequence[int]) -> Any:
    return _onnx().numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _head(
    nodes: list[Any],
    inits: list[Any],
    pooled: str,
    prefix: str,
    weight: np.ndarray,
    bias: np.ndarray,
    out: str,
    last: int,
    batched: bool,
    sigmoid: bool = False,
) -> None:
    """1x1 conv on the pooled map -> (optionally sigmoid) -> NHWC -> reshape to (N, last) or (1, N, last)."""
    h = _onnx().helper
    inits += [_const(f"{prefix}_w", weight), _const(f"{prefix}_b", bias)]
    nodes.append(h.make_node("Conv", [pooled, f"{prefix}_w", f"{prefix}_b"], [f"{prefix}_conv"]))
    src = f"{prefix}_conv"
    if sigmoid:
        nodes.append(h.make_node("Sigmoid", [src], [f"{prefix}_sig"]))
        src = f"{prefix}_sig"
    nodes.append(h.make_node("Transpose", [src], [f"{prefix}_nhwc"], perm=[0, 2, 3, 1]))
    shape = [1, -1, last] if batched else [-1, last]
    inits.append(_ints(f"{prefix}_shape", shape))
    nodes.append(h.make_node("Reshape", [f"{prefix}_nhwc", f"{prefix}_shape"], [out]))


def _brightness_weights(
    channels_out: int, gain: float, offsets: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    w = np.full((channels_out, 3, 1, 1), gain / 3.0, dtype=np.float32)
    b = np.asarray([-gain * o for o in offsets], dtype=np.float32)
    return w, b


def scrfd_graph(
    path: Path,
    *,
    batched: bool = False,
    dist: Sequence[float] = DEFAULT_DIST,
    kps: Sequence[Sequence[float]] = DEFAULT_KPS,
    fixed_size: tuple[int, int] | None = None,
    output_names: Sequence[str] | None = None,
) -> Path:
    """An SCRFD-shaped detector: input ``input.1`` (1, 3, H, W) of (RGB - 127.5) / 128; 9 outputs
    (score, bbox, kps for strides 8, 16, 32), 2 anchors per cell. Anchor 0 of a bright stride-32 cell
    scores higher than anchor 1 and carries ``dist``/``kps``; anchor 1 gets a shrunken copy."""
    onnx = _onnx()
    h = onnx.helper
    dims: list[Any] = [1, 3, fixed_size[1], fixed_size[0]] if fixed_size else [1, 3, "height", "width"]
    inp = h.make_tensor_value_info("input.1", onnx.TensorProto.FLOAT, dims)
    nodes: list[Any] = []
    inits: list[Any] = []
    names = list(output_names or [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)])
    outputs = []
    for i, s in enumerate((8, 16, 32)):
        pooled = f"pool{s}"
        nodes.append(h.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[s, s], strides=[s, s]))
        if s == 32:
            w, b = _brightness_weights(2, 24.0, (0.5, 0.55))
        else:
            w, b = np.zeros((2, 3, 1, 1), np.float32), np.full(2, -20.0, np.float32)
        _head(nodes, inits, pooled, f"score{s}", w, b, names[i], 1, batched, sigmoid=True)
        d = np.asarray(dist, np.float32)
        bb = np.concatenate([d, d * 0.8])
        _head(
            nodes, inits, pooled, f"bbox{s}", np.zeros((8, 3, 1, 1), np.float32), bb, names[3 + i], 4, batched
        )
        k = np.asarray(kps, np.float32).reshape(10)
        kb = np.concatenate([k, k * 0.8])
        _head(
            nodes,
            inits,
            pooled,
            f"kps{s}",
            np.zeros((20, 3, 1, 1), np.float32),
            kb,
            names[6 + i],
            10,
            batched,
        )
    for i, s in enumerate((8, 16, 32)):
        for j, last in ((0, 1), (3, 4), (6, 10)):
            shape: list[Any] = [1, f"n{s}", last] if batched else [f"n{s}", last]
            outputs.append((j + i, h.make_tensor_value_info(names[j + i], onnx.TensorProto.FLOAT, shape)))
    outputs.sort(key=lambda t: t[0])
    graph = h.make_graph(nodes, "scrfd_synthetic", [inp], [o for _, o in outputs], initializer=inits)
    return _save(graph, path)


def yunet_graph(
    path: Path,
    *,
    box: Sequence[float] = (0.5, 0.5, 0.0, 0.2),
    kps: Sequence[Sequence[float]] = ((0.15, 0.3), (0.85, 0.3), (0.5, 0.65), (0.25, 0.95), (0.75, 0.95)),
    fixed_size: tuple[int, int] | None = (640, 640),
) -> Path:
    """A YuNet-shaped detector: input ``input`` (1, 3, H, W) raw BGR; outputs cls_s, obj_s (1, N, 1),
    bbox_s (1, N, 4), kps_s (1, N, 10) for s in 8, 16, 32. ``box`` = (dx, dy, log w, log h) of a bright
    stride-32 cell, ``kps`` its landmark offsets, both in stride units from the cell's corner."""
    onnx = _onnx()
    h = onnx.helper
    dims: list[Any] = [1, 3, fixed_size[1], fixed_size[0]] if fixed_size else [1, 3, "height", "width"]
    inp = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, dims)
    nodes: list[Any] = []
    inits: list[Any] = []
    outs = []
    for s in (8, 16, 32):
        pooled = f"pool{s}"
        nodes.append(h.make_node("AveragePool", ["input"], [pooled], kernel_shape=[s, s], strides=[s, s]))
        if s == 32:  # raw 0-255 input: brightness / 255 - 0.5
            w, b = _brightness_weights(1, 24.0 / 255.0, (127.5,))
        else:
            w, b = np.zeros((1, 3, 1, 1), np.float32), np.full(1, -20.0, np.float32)
        _head(nodes, inits, pooled, f"c{s}", w, b, f"cls_{s}", 1, True, sigmoid=True)
        _head(nodes, inits, pooled, f"o{s}", w, b, f"obj_{s}", 1, True, sigmoid=True)
        _head(
            nodes,
            inits,
            pooled,
            f"b{s}",
            np.zeros((4, 3, 1, 1), np.float32),
            np.asarray(box),
            f"bbox_{s}",
            4,
            True,
        )
        kb = np.asarray(kps, np.float32).reshape(10)
        _head(nodes, inits, pooled, f"k{s}", np.zeros((10, 3, 1, 1), np.float32), kb, f"kps_{s}", 10, True)
    for kind, last in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            outs.append(h.make_tensor_value_info(f"{kind}_{s}", onnx.TensorProto.FLOAT, [1, f"n{s}", last]))
    graph = h.make_graph(nodes, "yunet_synthetic", [inp], outs, initializer=inits)
    return _save(graph, path)


def recognizer_graph(
    path: Path,
    *,
    dim: int = 512,
    input_name: str = "input.1",
    output_name: str = "683",
    batch: int | str = "None",
    seed: int = 0,
) -> Path:
    """An ArcFace/SFace-shaped recognizer: (B, 3, 112, 112) -> (B, dim), 8x8 average pooling and a
    random linear map. ArcFace: ``input.1`` -> ``683`` (dynamic batch); SFace: ``data`` -> ``fc1``,
    batch 1."""
    onnx = _onnx()
    h = onnx.helper
    rng = np.random.default_rng(seed)
    inp = h.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, [batch, 3, 112, 112])
    out = h.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, [batch, dim])
    feat = 3 * 14 * 14
    inits = [
        _const("W", rng.normal(0, 1 / np.sqrt(feat), (feat, dim))),
        _const("B", np.zeros(dim)),
    ]
    nodes = [
        h.make_node("AveragePool", [input_name], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        h.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        h.make_node("Gemm", ["flat", "W", "B"], [output_name]),
    ]
    graph = h.make_graph(nodes, "recognizer_synthetic", [inp], [out], initializer=inits)
    return _save(graph, path)


def make_pack_folder(
    folder: Path,
    name: str,
    *,
    detector: str = "scrfd",
    recognizer: str = "arcface",
    commercial_use: bool = False,
    seed: int = 0,
    manifest: bool = True,
    det_file: str | None = None,
    rec_file: str | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """A complete pack folder with synthetic networks. ``manifest=False`` leaves only the ONNX files
    (an InsightFace-style layout when the file names match a catalog entry)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if detector == "scrfd":
        det_name = det_file or "det_10g.onnx"
        scrfd_graph(folder / det_name)
        det: dict[str, Any] = {"kind": "scrfd", "file": det_name, "input_size": [640, 640]}
    else:
        det_name = det_file or "face_detection_yunet_2023mar.onnx"
        yunet_graph(folder / det_name)
        det = {"kind": "yunet", "file": det_name, "input_size": [640, 640]}
    if recognizer == "arcface":
        rec_name = rec_file or "w600k_r50.onnx"
        recognizer_graph(folder / rec_name, dim=512, seed=seed)
        rec: dict[str, Any] = {"kind": "arcface", "file": rec_name, "embedding_dim": 512}
    else:
        rec_name = rec_file or "face_recognition_sface_2021dec.onnx"
        recognizer_graph(folder / rec_name, dim=128, input_name="data", output_name="fc1", batch=1, seed=seed)
        rec = {"kind": "sface", "file": rec_name, "embedding_dim": 128}
    if manifest:
        data: dict[str, Any] = {
            "format": 1,
            "name": name,
            "version": "0-synthetic",
            "description": f"synthetic {detector} + {recognizer} test pack (recognises nobody)",
            "detector": det,
            "recognizer": rec,
            "license": {
                "id": "test-only" if not commercial_use else "MIT",
                "commercial_use": commercial_use,
                "text": "Synthetic test weights.",
                "url": "",
            },
            "source_url": "",
            "files": {det_name: sha256_file(folder / det_name), rec_name: sha256_file(folder / rec_name)},
        }
        if calibration is not None:
            data["calibration"] = calibration
        (folder / "facevault-pack.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return folder


def bright_square_image(
    size: tuple[int, int] = (640, 640), cells: Sequence[tuple[int, int]] = ((9, 9),), seed: int = 0
) -> np.ndarray:
    """A dark noisy RGB image with bright noisy 32x32 squares at the given (row, column) stride-32 cells:
    what the synthetic detectors call faces (at scale 1, i.e. for images of at most 640 px)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = rng.integers(0, 30, (h, w, 3)).astype(np.uint8)
    for r, c in cells:
        img[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = rng.integers(215, 256, (32, 32, 3)).astype(
            np.uint8
        )
    return img
