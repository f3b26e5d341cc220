"""Embedding many image files for an evaluation, in parallel, with one face chosen per image.

Evaluation protocols fix which face an image stands for: the one nearest the image centre. Where the
detector finds nothing, it takes a second, more lenient look; where that finds nothing either,
``fallback="centre"`` assumes a face box in the middle of the image (LFW's images are centred on the
face) and takes landmarks inside it, so no pair is silently dropped; the count of such images is
reported with every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import imaging
from ..config import Settings, eval_portrait_setting
from ..errors import FaceVaultError
from ..pipeline import Pipeline, map_with_pipeline

# Relative box of the face in a centred portrait (LFW 250x250: the median HOG box is about this).
CENTRE_BOX = (0.30, 0.30, 0.70, 0.70)


@dataclass(frozen=True)
class FileEmbedding:
    path: str
    vector: np.ndarray | None  # None when the file could not be used at all
    detected: bool  # False when the centre fallback was used
    error: str | None = None


def _embed_one(pipe: Pipeline, job: tuple[str, str, bool]) -> FileEmbedding:
    path, fallback, portrait = job
    try:
        decoded = imaging.load_image(path)
    except FaceVaultError as exc:
        return FileEmbedding(path, None, False, exc.code)
    work, scale, faces = pipe.detect(decoded.pixels, portrait=portrait)
    if not faces:
        faces = pipe.pack.detector.detect_lenient(work)
    detected = bool(faces)
    if faces:
        h, w = work.shape[:2]

        def centre_distance(f):  # type: ignore[no-untyped-def]
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            return (cx - w / 2) ** 2 + (cy - h / 2) ** 2

        face = min(faces, key=centre_distance)
    elif fallback == "centre":
        h, w = work.shape[:2]
        box = (CENTRE_BOX[0] * w, CENTRE_BOX[1] * h, CENTRE_BOX[2] * w, CENTRE_BOX[3] * h)
        face = pipe.pack.detector.landmarks_in_box(work, box)
    else:
        return FileEmbedding(path, None, False, "no_face")
    processed = pipe.embed_faces(work, scale, [face], full=decoded.pixels)
    return FileEmbedding(path, processed[0].embedding, detected)


def embed_files(
    paths: Sequence[str],
    *,
    model_id: str,
    settings: Settings,
    fallback: str = "centre",
    workers: int | None = None,
    progress: bool = True,
) -> list[FileEmbedding]:
    portrait = eval_portrait_setting()  # read here: the workers get it with each job
    jobs = [(p, fallback, portrait) for p in paths]
    results = map_with_pipeline(_embed_one, jobs, model_id=model_id, settings=settings, workers=workers)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        out = []
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("embedding", total=len(jobs))
            for r in results:
                out.append(r)
                bar.advance(task)
        return out
    return list(results)
