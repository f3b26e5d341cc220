"""Model packs: a detector + recognizer pair in ONNX form, described by a manifest, installed under
the models directory and registered in the model registry (``models.registry``) under the pack name.

Importing this package loads no model and no ONNX Runtime. It knows nothing of the registry: the
registry reads the manifests (``installed_packs``) and registers one lazy factory per pack
(``load_pack``), plus the pack's score calibration (``pack_calibration``); the factory re-checks every
file's SHA-256 and the license acceptance before the networks are loaded.

Detectors for other packs' recognizers: ``installed_detectors(root)`` lists every installed detector
(detector-only packs such as ``yunet`` from ``models fetch yunet``, and the detectors of full packs) and
``load_detector(name, root)`` gives one as a ``Detector`` (see ``detectors``).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, IntegrityError, ModelError
from ..base import ModelPack
from .detectors import InstalledDetector, build_detector, installed_detectors, load_detector
from .fetch import fetch_pack
from .install import (
    InstalledPack,
    get_installed,
    install_pack,
    installed_packs,
    models_dir,
    verify_installed,
    verify_pack,
)
from .manifest import MANIFEST_NAME, PackManifest, load_manifest, parse_manifest

__all__ = [
    "MANIFEST_NAME",
    "InstalledDetector",
    "InstalledPack",
    "PackManifest",
    "build_detector",
    "build_pack",
    "fetch_pack",
    "get_installed",
    "install_pack",
    "installed_detectors",
    "installed_packs",
    "load_detector",
    "load_manifest",
    "load_pack",
    "models_dir",
    "pack_calibration",
    "parse_manifest",
    "verify_installed",
    "verify_pack",
]


def build_pack(manifest: PackManifest, folder: Path, threads: int | None = None) -> ModelPack:
    """The ModelPack a manifest describes (networks load lazily, on first use)."""
    from .arcface import ArcFaceEmbedder

    det_spec, rec_spec = manifest.detector, manifest.recognizer
    if manifest.detector_only:
        raise ModelError(
            f"{manifest.name!r} is a detector-only pack: it makes no vectors (use it as the detector of "
            "another pack)"
        )
    detector = build_detector(det_spec, folder, threads)
    embedder = ArcFaceEmbedder(manifest.model_id, folder / rec_spec.file, rec_spec, threads)
    return ModelPack(
        model_id=manifest.model_id,
        detector=detector,
        embedder=embedder,
        description=manifest.description or f"{det_spec.kind} + {rec_spec.kind} ({manifest.version})",
    )


def load_pack(name: str, root: Path | None = None, threads: int | None = None) -> ModelPack:
    """An installed pack, after checking its files and license acceptance (refused otherwise)."""
    pack = get_installed(name, root)
    problems = verify_pack(pack)
    if problems:
        raise IntegrityError(f"model pack {name!r} in {pack.folder} failed its check: " + "; ".join(problems))
    return build_pack(pack.manifest, pack.folder, threads)


def pack_calibration(pack: InstalledPack) -> object | None:
    """The pack's score calibration (``calibration.Calibration``) from its manifest or from a
    ``calibration.json`` next to it, or None."""
    from ... import calibration

    data = pack.manifest.calibration
    extra = pack.folder / "calibration.json"
    if data is None and extra.is_file():
        import json

        data = json.loads(extra.read_text(encoding="utf-8"))
    if data is None:
        return None
    data = {**data, "model_id": pack.name}
    try:
        return calibration.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model pack {pack.name!r}: bad calibration ({exc})") from exc
