"""Helpers for tests that run a vault on synthetic model packs (no tests here): pack folders, keeping the
process-wide model registry as found, and "faces" the synthetic packs tell apart.

Real networks (the ONNX files of ``../shared/models``, see its SOURCE.md) are read through one setting,
``FACEVAULT_TEST_MODELS`` (default ``../shared/models``); ``real_model`` skips a test cleanly without them.

The synthetic detectors find bright 32x32 squares on the stride-32 grid and their recognizers pool the
aligned chip, so what tells two synthetic "people" apart is the chip's surroundings: a dark background
(``"dark"``) against a mid-grey one (``"grey"``) gives embeddings far apart (cosine about -0.4 with the
test packs), while the square's position and the noise hardly change them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facevault import calibration
from facevault.models import registry

from . import synthetic_pack as synthetic

MODELS = Path(
    os.environ.get("FACEVAULT_TEST_MODELS", Path(__file__).resolve().parents[1].parent / "shared" / "models")
).resolve()

# SHA-256 of the real files, as ../shared/models/SOURCE.md gives them.
REAL_SHA256 = {
    "face_detection_yunet_2023mar.onnx": "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    "yunet_s_dynamic.onnx": "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3",
    "det_500m.onnx": "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
    "det_2.5g.onnx": "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
    "mobilefacenet_foamliu.onnx": "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
    "mobilefacenet_foamliu_dynbatch.onnx": "85cdeb7368ed6a1e9cbaaa6f283c6b2439f1fa533c17450bfdc7f357d285d5d1",
}


def real_model(name: str) -> Path:
    """A real ONNX file from ``FACEVAULT_TEST_MODELS`` (the test is skipped when it is not there)."""
    p = MODELS / name
    if not p.is_file():
        pytest.skip(f"real model not available: {p} (set FACEVAULT_TEST_MODELS)")
    return p


def calibration_table() -> dict:
    rng = np.random.default_rng(1)
    return calibration.from_impostor_scores("x", rng.normal(0, 0.1, 5000), "synthetic").to_json()


def pack_folder(base: Path, name: str, seed: int, *, calibrated: bool = True, licensed: bool = False) -> Path:
    """A synthetic SCRFD + ArcFace pack folder. ``licensed``: a commercial-use license (no acceptance
    needed); otherwise installing it needs ``accept_license=True``."""
    return synthetic.make_pack_folder(
        base / name,
        name,
        seed=seed,
        calibration=calibration_table() if calibrated else None,
        commercial_use=licensed,
    )


def restore_registry() -> Iterator[None]:
    """Body of an autouse fixture: packs registered by a test point at temporary folders, so leave the
    model registry and the calibration tables as they were."""
    saved = (
        dict(registry._factories),
        dict(registry._loaded),
        dict(calibration._registered),
        set(registry._registered_roots),
    )
    yield
    registry._factories.clear()
    registry._factories.update(saved[0])
    registry._loaded.clear()
    registry._loaded.update(saved[1])
    calibration._registered.clear()
    calibration._registered.update(saved[2])
    registry._registered_roots.clear()
    registry._registered_roots.update(saved[3])


def face_image(look: str, cell: tuple[int, int] = (9, 9), seed: int = 0) -> np.ndarray:
    """A 640x640 photo of one synthetic person: a bright square at ``cell`` (row, column of the stride-32
    grid) on a ``"dark"`` or ``"grey"`` background (too dim to be a face itself)."""
    rng = np.random.default_rng(seed)
    low, high = {"dark": (0, 30), "grey": (135, 165)}[look]
    img = rng.integers(low, high, (640, 640, 3))
    r, c = cell
    img[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = rng.integers(215, 256, (32, 32, 3))
    return img.astype(np.uint8)
