"""Model packs by id. Loading is lazy and cached per process: importing this module loads nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import ModelError
from .base import DetectedFace, Detector, Embedder, ModelPack, l2_normalize

__all__ = [
    "DetectedFace",
    "Detector",
    "Embedder",
    "ModelPack",
    "available_models",
    "get_pack",
    "l2_normalize",
    "register_pack",
]


def _dlib_embedder() -> Embedder:
    """ONNX Runtime runs the ResNet when installed (the default); dlib itself otherwise, or when
    ``FACEVAULT_RUNTIME=dlib``. Both give the same vectors, so the model id is the same."""
    import os

    from .dlib_models import DlibResnetEmbedder, DlibResnetOnnxEmbedder

    runtime = os.environ.get("FACEVAULT_RUNTIME", "onnx")
    threads = int(os.environ.get("FACEVAULT_THREADS", "0") or 0)
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    if runtime == "onnx" and have_ort:
        return DlibResnetOnnxEmbedder(threads=threads)
    return DlibResnetEmbedder()


def _dlib_resnet_v1() -> ModelPack:
    """``FACEVAULT_LANDMARK_REFINE=1`` averages the landmarks over shifted boxes and the mirror image
    (``dlib_models.REFINE_SHIFTS``): more accurate, but about 5 ms more per face on a busy core, which
    costs the ingest target, so it is off by default (docs/BENCHMARKS.md)."""
    import os

    from .dlib_models import DlibHogDetector

    refine = os.environ.get("FACEVAULT_LANDMARK_REFINE", "0").strip().lower() in {"1", "true", "yes", "on"}
    return ModelPack(
        model_id="dlib-resnet-v1",
        detector=DlibHogDetector(refine=refine),
        embedder=_dlib_embedder(),
        description="dlib HOG frontal detector, 5-point landmarks, 128-d ResNet (face-recognition-models)",
    )


def _dlib_resnet_v1_lm68() -> ModelPack:
    """The default pack aligned with dlib's 68-point landmarks: better accuracy, non-commercial license
    (``dlib_license``). Refused until the license is accepted in the models folder."""
    from .dlib_license import LM68_PACK, require_accepted
    from .dlib_models import DlibHogDetector
    from .packs import models_dir, registered_roots

    require_accepted([models_dir(), *registered_roots()])
    return ModelPack(
        model_id=LM68_PACK,
        detector=DlibHogDetector(landmarks=68),
        embedder=_dlib_embedder(),
        description="dlib HOG frontal detector, 68-point landmarks (iBUG 300-W, non-commercial), "
        "128-d ResNet (face-recognition-models)",
    )


_factories: dict[str, Callable[[], ModelPack]] = {
    "dlib-resnet-v1": _dlib_resnet_v1,
    "dlib-resnet-v1-lm68": _dlib_resnet_v1_lm68,
}
_loaded: dict[str, ModelPack] = {}
_lock = threading.RLock()  # a pack factory may build on another pack


def register_pack(model_id: str, factory: Callable[[], ModelPack]) -> None:
    """Make another model pack available under ``model_id``."""
    with _lock:
        _factories[model_id] = factory
        _loaded.pop(model_id, None)


def _scan_packs() -> None:
    """Register installed model packs (reads their manifests; loads no network)."""
    from .packs import ensure_registered

    ensure_registered()


def available_models() -> list[str]:
    _scan_packs()
    return sorted(_factories)


def get_pack(model_id: str) -> ModelPack:
    with _lock:
        pack = _loaded.get(model_id)
        if pack is None:
            factory = _factories.get(model_id)
            if factory is None:
                _scan_packs()
                factory = _factories.get(model_id)
            if factory is None:
                raise ModelError(f"unknown model {model_id!r}; available: {', '.join(sorted(_factories))}")
            pack = factory()
            if pack.model_id != model_id:
                raise ModelError(f"model pack registered as {model_id!r} reports id {pack.model_id!r}")
            _loaded[model_id] = pack
        return pack
