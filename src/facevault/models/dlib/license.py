"""License gate of the built-in ``dlib-resnet-v1-lm68`` pack.

It is the default pack with one part changed: faces are aligned with dlib's 68-point landmark model
(shipped in ``face-recognition-models``) instead of the 5-point one. dlib's model notes say the 68-point
model was trained on iBUG 300-W, whose license excludes commercial use, and that the model therefore
cannot be used in a commercial product. Like InsightFace's packs, it is used only after someone accepts
that, which ``facevault models accept-license dlib-resnet-v1-lm68`` records (license text, user, time)
in ``<models dir>/dlib-resnet-v1-lm68/LICENSE-ACCEPTED.json``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ...config import login_name
from ...errors import ModelError

LM68_PACK = "dlib-resnet-v1-lm68"
LICENSE_ID = "iBUG-300-W-non-commercial"
LICENSE_URL = "https://github.com/davisking/dlib-models#shape_predictor_68_face_landmarksdatbz2"
LICENSE_TEXT = (
    "shape_predictor_68_face_landmarks.dat (dlib, distributed in face-recognition-models) was trained on "
    "the iBUG 300-W dataset (https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/). The license "
    "of that dataset excludes commercial use, and one of its creators asked that the trained model "
    "therefore not be used in a commercial product. By accepting, you confirm that your use of the "
    "dlib-resnet-v1-lm68 pack is non-commercial or that you hold the permission needed for it."
)
RECORD_NAME = "LICENSE-ACCEPTED.json"


def record_path(models_root: Path) -> Path:
    return models_root / LM68_PACK / RECORD_NAME


def acceptance(models_root: Path) -> dict[str, object] | None:
    """The acceptance record, when it exists and is for today's license text."""
    p = record_path(models_root)
    if not p.is_file():
        return None
    record = json.loads(p.read_text(encoding="utf-8"))
    return record if record.get("license_text") == LICENSE_TEXT else None


def accept(models_root: Path, accepted_by: str | None = None) -> dict[str, object]:
    record: dict[str, object] = {
        "pack": LM68_PACK,
        "license_id": LICENSE_ID,
        "license_url": LICENSE_URL,
        "license_text": LICENSE_TEXT,
        "accepted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "accepted_by": accepted_by or login_name(),
    }
    p = record_path(models_root)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return record


def require_accepted(models_roots: list[Path]) -> None:
    """Raise unless one of the models folders in use holds the acceptance record."""
    if not any(acceptance(root) is not None for root in models_roots):
        raise ModelError(
            f"{LM68_PACK} aligns faces with dlib's 68-point landmark model, whose training data's license "
            f"excludes commercial use ({LICENSE_URL}). Read it, then run "
            f"`facevault models accept-license {LM68_PACK}`.",
            code="license_not_accepted",
        )
