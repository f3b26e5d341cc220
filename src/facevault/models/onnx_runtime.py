"""ONNX Runtime sessions: explicit threads, and the execution provider chosen by ``FACEVAULT_PROVIDER``:

- ``auto`` (default): CUDA when the installed runtime offers it (``onnxruntime-gpu``), else CPU;
- ``cpu``: CPU only, even on a GPU machine (e.g. to keep the GPU for something else);
- ``cuda``: CUDA or an error: a deployment that expects a GPU must not slow down silently.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import provider_setting as _provider_env
from ..errors import ConfigError, ModelError


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


PROVIDER_SETTINGS = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def provider_setting() -> str:
    """``FACEVAULT_PROVIDER``, checked: one of ``PROVIDER_SETTINGS`` or a ConfigError."""
    value = _provider_env()
    if value not in PROVIDER_SETTINGS:
        raise ConfigError(f"FACEVAULT_PROVIDER must be one of {', '.join(PROVIDER_SETTINGS)}, got {value!r}")
    return value


def chosen_providers(setting: str, available: list[str]) -> list[str]:
    """The providers a session is created with, in order of preference."""
    if setting == "cpu":
        return [CPU]
    if setting == "cuda" and CUDA not in available:
        raise ModelError(
            "FACEVAULT_PROVIDER=cuda, but this ONNX Runtime offers no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use auto/cpu",
            code="provider_unavailable",
        )
    return [CUDA, CPU] if CUDA in available else [CPU]


def make_session(model_path: str | os.PathLike[str], threads: int = 0) -> Any:
    """An inference session. ``threads`` = intra-op threads (0 = ONNX Runtime's default: all cores)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ModelError("onnxruntime is not installed") from exc
    setting = provider_setting()
    providers = chosen_providers(setting, list(ort.get_available_providers()))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: a spinning pool starves what runs next on a small
    # machine (numpy's BLAS threads took 0.6 s for one 128x128 QR after an embedding on two cores) and
    # the CPU time other worker processes need.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
    if setting == "cuda" and session.get_providers()[0] != CUDA:
        # the CUDA provider is built in but could not start (no driver, no libraries): ORT fell back
        raise ModelError(
            f"FACEVAULT_PROVIDER=cuda, but ONNX Runtime could not start CUDA for {model_path} "
            f"(running on {', '.join(session.get_providers())})",
            code="provider_unavailable",
        )
    return session


def runtime_info() -> dict[str, object]:
    """What `facevault models list` reports about the inference runtime."""
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    setting = provider_setting()
    try:
        chosen: object = chosen_providers(setting, available)[0]
    except ModelError as exc:
        chosen = f"unavailable: {exc.message}"
    return {
        "onnxruntime": ort.__version__,
        "available_providers": available,
        "provider_setting": setting,
        "provider": chosen,
    }
