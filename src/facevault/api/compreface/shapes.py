"""facevault's results in CompreFace's JSON: boxes, faces with the plugins asked for, image ids, and
the similarity scale CompreFace's clients apply their cut-offs to.

Similarity. CompreFace's ``similarity`` is read by its clients as "most correct matches above 0.5",
and they cut it themselves (Double Take: a match from 0.60, a name at all from 0.40). facevault's
cosine scores mean different things per model, so the value sent is computed from the calibrated
false-match rate (FMR) of the score, on a fixed scale, the same whatever the model:

    similarity = clip(0.1 * (1 - log10(FMR)), 0, 1)

which is monotonic in the score and puts FMR 1e-3 (facevault's default 1:1 operating point and the
loosest 1:N one) at 0.40, FMR 1e-4 at 0.50 and FMR 1e-5 (facevault's strict operating point, identity
conflicts and opt-outs) at 0.60; 1.00 is FMR 1e-9 or rarer. Double Take then names a face for whatever
facevault returns (every candidate of a search is at or above its threshold, FMR <= 1e-3), and calls
it a match only at FMR <= 1e-5. The raw score and FMR travel next to it (``facevault`` field).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ...results import Candidate
from ...service.compat_match import CompatFace
from .errors import EMBEDDING_NOT_FOUND, CompatError

_UUID = re.compile(r"^00000000-0000-0000-([0-9a-f]{4})-([0-9a-f]{12})$")


def similarity(fmr: float) -> float:
    """CompreFace's similarity for a score of estimated false-match rate ``fmr`` (module docstring)."""
    if fmr <= 0:
        return 1.0
    return round(min(1.0, max(0.0, 0.1 * (1.0 - math.log10(fmr)))), 5)


def image_id(sample_id: int) -> str:
    """A sample's id in CompreFace's UUID form (reversible: ``sample_id_of``)."""
    digits = f"{int(sample_id):016x}"
    return f"00000000-0000-0000-{digits[:4]}-{digits[4:]}"


def sample_id_of(value: str) -> int:
    """The sample id an image id names: the UUID form above, or the plain integer."""
    text = (value or "").strip().lower()
    m = _UUID.match(text)
    if m:
        return int(m.group(1) + m.group(2), 16)
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    raise CompatError(404, EMBEDDING_NOT_FOUND, f"no face with image id {value!r}", "sample_not_found")


def box(face: CompatFace) -> dict[str, Any]:
    """``box`` as CompreFace has it. ``probability`` is the detector's own score clipped into [0, 1]: a
    probability for detectors that give one, a margin for dlib's HOG detector (docs/API.md)."""
    x1, y1, x2, y2 = face.box
    return {
        "probability": round(min(1.0, max(0.0, face.score)), 5),
        "x_min": int(round(x1)),
        "y_min": int(round(y1)),
        "x_max": int(round(x2)),
        "y_max": int(round(y2)),
    }


def face_json(face: CompatFace, plugins: set[str]) -> dict[str, Any]:
    """A face with its box and the plugins asked for that facevault computes (landmarks, calculator);
    never age, gender, mask or pose."""
    out: dict[str, Any] = {"box": box(face)}
    if "landmarks" in plugins:
        out["landmarks"] = [[int(round(x)), int(round(y))] for x, y in face.landmarks]
    if "calculator" in plugins and face.embedding is not None:
        out["embedding"] = face.embedding
    return out


def subjects_json(candidates: list[Candidate]) -> list[dict[str, Any]]:
    return [
        {
            "subject": c.name,
            "similarity": similarity(c.estimated_fmr),
            "facevault": {
                "score": c.similarity,
                "estimated_fmr": c.estimated_fmr,
                "subject_id": c.subject_id,
            },
        }
        for c in candidates
    ]


def plugins_versions(model_id: str, plugins: set[str]) -> dict[str, str]:
    versions = {"detector": f"facevault.{model_id}"}
    if "calculator" in plugins:
        versions["calculator"] = f"facevault.{model_id}"
    if "landmarks" in plugins:
        versions["landmarks"] = f"facevault.{model_id}"
    return versions


def page_json(faces: list[dict[str, Any]], page: int, size: int, total: int) -> dict[str, Any]:
    return {
        "faces": faces,
        "page_number": page,
        "page_size": size,
        "total_pages": (total + size - 1) // size,
        "total_elements": total,
    }
