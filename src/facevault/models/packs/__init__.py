"""Model packs: a detector + recognizer pair in ONNX form, described by a manifest, installed under
the models directory and registered in the model registry (``models.registry``) under the pack name.

Importing this package loads no model and no ONNX Runtime. It knows nothing of the registry: the
registry reads the manifests (``installed_packs``) and registers one lazy factory per pack
(``load_pack``), plus the pack's score calibration (``pack_calibration``); the factory re-checks every
file's SHA-256 and the license acceptance before the networks are loaded.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, IntegrityError, ModelError
from ..base import ModelPack
from .install import (
    InstalledPack,
    fetch_pack,
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
    "InstalledPack",
    "PackManifest",
    "build_pack",
    "fetch_pack",
    "get_installed",
    "install_pack",
    "installed_packs",
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
    from ..base import Detector
    from .arcface import ArcFaceEmbedder
    from .scrfd import ScrfdDetector
    from .yunet import YunetDetector

    det_spec, rec_spec = manifest.detector, manifest.recognizer
    detector: Detector
    if det_spec.kind == "scrfd":
        detector = ScrfdDetector(folder / det_spec.file, det_spec, threads)
    elif det_spec.kind == "yunet":
        detector = YunetDetector(folder / det_spec.file, det_spec, threads)
    else:  # pragma: no cover - the manifest parser refuses other kinds
        raise ModelError(f"unknown detector kind {det_spec.kind!r}")
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
