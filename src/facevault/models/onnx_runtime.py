"""ONNX Runtime sessions: CPU by default, CUDA when the installed runtime offers it; explicit threads."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelError


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def make_session(model_path: str | os.PathLike[str], threads: int = 0, prefer_gpu: bool = True) -> Any:
    """An inference session. ``threads`` = intra-op threads (0 = ONNX Runtime's default: all cores)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ModelError("onnxruntime is not installed") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
