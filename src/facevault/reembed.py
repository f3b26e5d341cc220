"""Embed the face at a known place with another model pack: the face of a stored crop when a collection
moves to a new pack, and the face of an enrollment photo for opt-outs recorded with an older pack.

The pack's own detector looks first, and the detection that best overlaps the known box is used (same
alignment as enrollment); when none overlaps it by at least ``MIN_IOU``, the detector's
``landmarks_in_box`` places landmarks in the known box. Then the pipeline aligns and embeds as at
enrollment (same test-time augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models.base import box_iou
from .pipeline import Pipeline, ProcessedFace

MIN_IOU = 0.3


@dataclass(frozen=True)
class Reembedded:
    face: ProcessedFace  # in the given pixels' coordinates; embedding unit length
    detected: bool  # False: the landmarks were placed in the known box (the detector's fallback)


CropJob = tuple[int, np.ndarray, tuple[float, float, float, float]]  # sample id, pixels, face box
CropResult = tuple[int, np.ndarray | None, bool, str | None]  # sample id, embedding, detected, error


def embed_crop_job(pipe: Pipeline, job: CropJob) -> CropResult:
    """``embed_at`` for one stored crop, as a worker function: never raises, names the failure."""
    sid, pixels, box = job
    try:
        found = embed_at(pipe, pixels, box)
    except Exception as exc:  # whatever a network does with one odd crop must name the sample
        return sid, None, False, f"{type(exc).__name__}: {exc}"
    return sid, found.face.embedding, found.detected, None


def embed_at(pipe: Pipeline, pixels: np.ndarray, box: tuple[float, float, float, float]) -> Reembedded:
    """The face at ``box`` (pixel coordinates of ``pixels``), embedded by ``pipe``'s pack. Raises
    ``ValueError`` when the result is not a usable embedding."""
    with pipe.lock:  # the pipeline's own lock: detectors are not documented as thread-safe
        work, scale, faces = pipe.detect(pixels, portrait=True)
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        target = (x1, y1, x2, y2)
        best = max(((box_iou(f.box, target), f) for f in faces), key=lambda p: p[0], default=None)
        if best is not None and best[0] >= MIN_IOU:
            face, detected = best[1], True
        else:
            face, detected = pipe.pack.detector.landmarks_in_box(work, target), False
        processed = pipe.embed_faces(work, scale, [face], full=pixels)
    if len(processed) != 1 or not np.all(np.isfinite(processed[0].embedding)):
        raise ValueError("the recognizer gave no usable embedding")
    if float(np.linalg.norm(processed[0].embedding)) < 0.5:
        raise ValueError("the recognizer gave an empty embedding")
    return Reembedded(processed[0], detected)
