"""Helpers for tests that run a vault on synthetic model packs (no tests here): pack folders, keeping the
process-wide model registry as found, and "faces" the synthetic packs tell apart.

The synthetic detectors find bright 32x32 squares on the stride-32 grid and their recognizers pool the
aligned chip, so what tells two synthetic "people" apart is the chip's surroundings: a dark background
(``"dark"``) against a mid-grey one (``"grey"``) gives embeddings far apart (cosine about -0.4 with the
test packs), while the square's position and the noise hardly change them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facevault import calibration
from facevault.models import registry

from . import synthetic_pack as synthetic


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
