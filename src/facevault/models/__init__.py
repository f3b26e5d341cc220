"""Model packs by id. Loading is lazy and cached per process: importing this package loads no model.

Which packs exist is kept by ``registry``; the names below are re-exported for the service.
"""

from __future__ import annotations

from .base import DetectedFace, Detector, Embedder, ModelPack, l2_normalize
from .registry import available_models, get_pack, register_pack

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
