"""Face detection as a service: every face of a photo with its box, landmarks, detector score and quality,
and every named reason the enrollment gate would refuse it for. No identity: no face is embedded,
compared or stored.

Audited (a ``detect`` entry with the photo's hash and the face count): locating a face and its landmarks
is processing of biometric data even without identifying anyone (docs/PRIVACY.md).
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from ..audit_events import Detected
from ..errors import FaceVaultError
from ..models.base import DetectedFace
from ..pipeline import Pipeline
from ..quality import FaceQuality, QualityGate, assess, turned_over, upside_down
from ..results import DetectedFaceInfo, DetectResult
from .context import ImageInput, ServiceContext
from .enroll import quality_gate

DEFAULT_PURPOSE = "detection"
INF = float("inf")


def detect(
    ctx: ServiceContext,
    image: ImageInput,
    *,
    model: str | None = None,
    detector: str | None = None,
    purpose: str | None = None,
    draw: bool = False,
) -> DetectResult:
    """Every face in ``image``, largest first, found by ``model``'s detector (the vault's default model
    when None). ``draw``: the result also carries the photo as a JPEG with the boxes and landmarks drawn
    (``drawn_jpeg``), green for a face enrollment would accept, orange otherwise."""
    purpose = (purpose or "").strip() or DEFAULT_PURPOSE
    model_id = model or ctx.settings.default_model
    pipe = ctx.pipeline(model_id, detector)
    try:
        decoded = ctx.decode(image)
    except FaceVaultError as exc:
        with ctx.write() as conn:
            ctx.log(conn, Detected(purpose=purpose, outcome="error", model_id=model_id, error=exc.code))
        raise
    gate = quality_gate(ctx)
    with pipe.lock:  # the pipeline's own lock: detectors are not documented as thread-safe
        work, scale, found = pipe.detect(decoded.pixels)
        faces = [_describe(ctx, pipe, i, work, scale, f, gate) for i, f in enumerate(found)]
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            Detected(
                purpose=purpose,
                probe_sha256=decoded.sha256,
                outcome="ok",
                model_id=model_id,
                faces=len(faces),
            ),
        )
    height, width = decoded.pixels.shape[:2]
    return DetectResult(
        model_id=model_id,
        detector=pipe.pack.detector.name,
        probe_sha256=decoded.sha256,
        width=int(width),
        height=int(height),
        audit_seq=seq,
        faces=faces,
        drawn_jpeg=drawn(decoded.pixels, faces) if draw else None,
    )


def gate_reasons(q: FaceQuality, gate: QualityGate) -> list[str]:
    """Every reason ``gate`` would refuse a face of quality ``q`` for, in the gate's own order (the gate
    itself names only the first)."""
    singles = (
        replace(gate, min_sharpness=-INF, max_yaw=INF, max_roll=INF),  # size only
        replace(gate, min_eye_distance=-INF, min_sharpness=-INF),  # pose only
        replace(gate, min_eye_distance=-INF, max_yaw=INF, max_roll=INF),  # sharpness only
    )
    return [reason for single in singles if (reason := single.rejection(q)) is not None]


def _point(p: tuple[float, float] | np.ndarray) -> list[float]:
    return [round(float(p[0]), 1), round(float(p[1]), 1)]


def _original(face: DetectedFace, scale: float) -> DetectedFace:
    """``face`` (found on a copy shrunk by ``scale``) in the original photo's coordinates."""
    if scale == 1.0:
        return face
    f = 1.0 / scale
    return replace(
        face,
        box=(face.box[0] * f, face.box[1] * f, face.box[2] * f, face.box[3] * f),
        landmarks=face.landmarks * f,
        left_eye=(face.left_eye[0] * f, face.left_eye[1] * f),
        right_eye=(face.right_eye[0] * f, face.right_eye[1] * f),
        nose=(face.nose[0] * f, face.nose[1] * f),
    )


def _describe(
    ctx: ServiceContext,
    pipe: Pipeline,
    index: int,
    work: np.ndarray,
    scale: float,
    face: DetectedFace,
    gate: QualityGate,
) -> DetectedFaceInfo:
    """Box, landmarks and quality of one face found on ``work``; quality is judged as enrollment judges
    it (the same aligned chip, the same upside-down check), so ``reasons`` are the gate's own."""
    chip = pipe.pack.embedder.align(work, face)
    original = _original(face, scale)
    q = assess(original, chip)
    if turned_over(work, face, pipe.pack.detector):
        q = upside_down(q)
    reasons = gate_reasons(q, gate)
    return DetectedFaceInfo(
        face_index=index,
        box=original.box_list(),
        landmarks=[_point(p) for p in original.landmarks],
        left_eye=_point(original.left_eye),
        right_eye=_point(original.right_eye),
        nose=_point(original.nose),
        detector_score=round(float(face.score), 4),
        quality=q.to_dict(),
        enrollable=not reasons,
        reasons=reasons,
        searchable=q.eye_distance >= ctx.settings.search_min_eye_distance,
    )


def drawn(pixels: np.ndarray, faces: list[DetectedFaceInfo]) -> bytes:
    """The photo as JPEG with each face's box, index and landmarks drawn on it."""
    img = Image.fromarray(pixels)
    pen = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 400))
    for f in faces:
        colour = (40, 200, 60) if f.enrollable else (255, 150, 0)
        x1, y1, x2, y2 = f.box
        pen.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        pen.text((x1 + width + 1, y1 + width + 1), str(f.face_index), fill=colour)
        r = max(1.5, width * 0.9)
        for x, y in f.landmarks:
            pen.ellipse((x - r, y - r, x + r, y + r), fill=(230, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
