"""The built-in packs, whose files come with the ``face-recognition-models`` package instead of a pack
folder: their factories, and what ``facevault models list``, ``info`` and ``verify`` say about them.

Which packs exist is the registry's business (``models.registry``); this module knows nothing of it, so
the factories take what they need (the models folders in use) as arguments."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ...config import landmark_refine_setting, runtime_setting, threads_setting
from ..base import Embedder, ModelPack
from .license import LICENSE_ID, LICENSE_URL, LM68_PACK, RECORD_NAME, acceptance, require_accepted

DEFAULT_PACK = "dlib-resnet-v1"

BUILTIN_PACKS = (DEFAULT_PACK, LM68_PACK)
# (license id, URL) of each built-in pack; only the 68-point one needs acceptance.
_LICENSES = {
    DEFAULT_PACK: (
        "CC0-1.0 (dlib models, per face-recognition-models)",
        "https://github.com/davisking/dlib-models",
    ),
    LM68_PACK: (LICENSE_ID, LICENSE_URL),
}


def dlib_embedder() -> Embedder:
    """ONNX Runtime runs the ResNet when installed (the default); dlib itself otherwise, or when
    ``FACEVAULT_RUNTIME=dlib``. Both give the same vectors, so the model id is the same."""
    from .models import DlibResnetEmbedder, DlibResnetOnnxEmbedder

    threads = threads_setting()  # checked even when unused: a bad value is an error either way
    try:
        import onnxruntime  # noqa: F401

        have_ort = True
    except ImportError:
        have_ort = False
    if runtime_setting() == "onnx" and have_ort:
        return DlibResnetOnnxEmbedder(threads=threads)
    return DlibResnetEmbedder()


def dlib_resnet_v1() -> ModelPack:
    """The default pack. ``FACEVAULT_LANDMARK_REFINE=1`` averages the landmarks over shifted boxes and
    the mirror image (``models.REFINE_SHIFTS``): more accurate, but about 5 ms more per face on a busy
    core, which costs the ingest target, so it is off by default (docs/BENCHMARKS.md)."""
    from .default_detector import DefaultDlibDetector

    return ModelPack(
        model_id=DEFAULT_PACK,
        detector=DefaultDlibDetector(refine=landmark_refine_setting()),
        embedder=dlib_embedder(),
        description="dlib MMOD CNN detector (HOG first for portraits), 5-point landmarks, 128-d ResNet "
        "(face-recognition-models)",
    )


def dlib_resnet_v1_lm68(models_roots: list[Path]) -> ModelPack:
    """The default pack aligned with dlib's 68-point landmarks: better accuracy, non-commercial license
    (``license``). Refused unless one of ``models_roots`` (the models folders in use) holds the
    acceptance."""
    from .models import DlibHogDetector

    require_accepted(models_roots)
    return ModelPack(
        model_id=LM68_PACK,
        detector=DlibHogDetector(landmarks=68),
        embedder=dlib_embedder(),
        description="dlib HOG frontal detector, 68-point landmarks (iBUG 300-W, non-commercial), "
        "128-d ResNet (face-recognition-models)",
    )


def summary(name: str, models_root: Path) -> dict[str, Any]:
    """The line `facevault models list` shows for a built-in pack (reads no model file)."""
    lm68 = name == LM68_PACK
    record = acceptance(models_root) if lm68 else None
    return {
        "name": name,
        "detector": "dlib-hog-68" if lm68 else "dlib-mmod",
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
    from ... import calibration
    from .models import CHIP_PADDING, CHIP_SIZE, CONVERTER_VERSION, model_files

    frm = model_files()

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
        "description": ("dlib HOG detector, " if lm68 else "dlib MMOD CNN detector (HOG for portraits), ")
        + ("68-point (iBUG 300-W)" if lm68 else "5-point")
        + " landmarks, 128-d ResNet run by ONNX Runtime",
        "detector": {
            "kind": "dlib-hog" if lm68 else "dlib-mmod",
            "landmarks": 68 if lm68 else 5,
            "file": landmarks.name,
        },
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
