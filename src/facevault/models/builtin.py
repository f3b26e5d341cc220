"""What ``facevault models info`` and ``verify`` say about the built-in packs, whose files come with the
``face-recognition-models`` package instead of a pack folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import FaceVaultError
from .dlib_license import LICENSE_ID, LICENSE_URL, LM68_PACK, RECORD_NAME, acceptance

BUILTIN_PACKS = ("dlib-resnet-v1", LM68_PACK)
# (license id, URL) of each built-in pack; only the 68-point one needs acceptance.
_LICENSES = {
    "dlib-resnet-v1": (
        "CC0-1.0 (dlib models, per face-recognition-models)",
        "https://github.com/davisking/dlib-models",
    ),
    LM68_PACK: (LICENSE_ID, LICENSE_URL),
}


def summary(name: str, models_root: Path) -> dict[str, Any]:
    """The line `facevault models list` shows for a built-in pack (reads no model file)."""
    lm68 = name == LM68_PACK
    record = acceptance(models_root) if lm68 else None
    return {
        "name": name,
        "detector": "dlib-hog-68" if lm68 else "dlib-hog",
        "recognizer": "dlib-resnet",
        "embedding_dim": 128,
        "license": _LICENSES[name][0],
        "commercial_use": not lm68,
        "license_accepted_at": record.get("accepted_at") if record else None,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(name: str, models_root: Path) -> dict[str, Any]:
    """Detector, recognizer, files with their SHA-256, license and calibration of a built-in pack."""
    import face_recognition_models as frm

    from .. import calibration
    from .dlib_models import CHIP_PADDING, CHIP_SIZE, CONVERTER_VERSION

    lm68 = name == LM68_PACK
    landmarks = Path(
        frm.pose_predictor_model_location() if lm68 else frm.pose_predictor_five_point_model_location()
    )
    resnet = Path(frm.face_recognition_model_location())
    cal = calibration.for_model(name)
    record = acceptance(models_root) if lm68 else None
    return {
        "name": name,
        "version": "built-in",
        "description": "dlib HOG detector, "
        + ("68-point (iBUG 300-W)" if lm68 else "5-point")
        + " landmarks, 128-d ResNet run by ONNX Runtime",
        "detector": {"kind": "dlib-hog", "landmarks": 68 if lm68 else 5, "file": landmarks.name},
        "recognizer": {
            "kind": "dlib-resnet",
            "file": resnet.name,
            "input_size": [CHIP_SIZE, CHIP_SIZE],
            "chip_padding": CHIP_PADDING,
            "embedding_dim": 128,
            "onnx": f"converted on first use (converter version {CONVERTER_VERSION}), cached",
        },
        "license": {"id": _LICENSES[name][0], "url": _LICENSES[name][1], "commercial_use": not lm68},
        "license_record": record,
        "files": {str(p): _sha256(p) for p in (landmarks, resnet)},
        "calibration": {"impostor_pairs": cal.impostor_pairs, "source": cal.source},
        "source_url": "https://pypi.org/project/face-recognition-models/",
    }


def verify_record(name: str, models_root: Path) -> list[str]:
    """Problems with what the models folder holds for a built-in pack (only a license record)."""
    if name == LM68_PACK and acceptance(models_root) is None:
        return [
            f"{RECORD_NAME} is not an acceptance of the current license text; run "
            f"`facevault models accept-license {LM68_PACK}`"
        ]
    return []


def license_acceptance(model_id: str, models_root: Path) -> dict[str, Any] | None:
    """For a pack whose license needs acceptance (the 68-point built-in, non-commercial installed packs):
    who accepted which license text and when, for the vault's audit log; None for other packs."""
    if model_id == LM68_PACK:
        record: dict[str, Any] | None = acceptance(models_root)
    elif model_id in BUILTIN_PACKS:
        return None
    else:
        from .packs import get_installed

        try:
            pack = get_installed(model_id, models_root)
        except FaceVaultError:  # not an installed pack (e.g. registered by code): nothing recorded
            return None
        if not pack.manifest.license.needs_acceptance:
            return None
        record = pack.license_record
    if record is None:
        return None
    text = str(record.get("license_text") or "")
    return {
        "license_id": record.get("license_id"),
        "license_url": record.get("license_url"),
        "license_text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "accepted_at": record.get("accepted_at"),
        "accepted_by": record.get("accepted_by"),
    }
