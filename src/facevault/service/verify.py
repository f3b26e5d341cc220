"""1:1 verification: is the (largest) face in one photo the same person as the one in another?"""

from __future__ import annotations

from .. import calibration
from ..audit_events import Verified
from ..errors import FaceVaultError, NoFaceError
from ..results import VerifyResult
from .context import ImageInput, ServiceContext, source_name


def verify(
    ctx: ServiceContext,
    image_a: ImageInput,
    image_b: ImageInput,
    *,
    model: str | None = None,
    purpose: str = "verification",
    case_id: str | None = None,
    fmr: float | None = None,
    threshold: float | None = None,
) -> VerifyResult:
    model_id = model or ctx.settings.default_model
    thr, thr_fmr = ctx.threshold(model_id, fmr, threshold, ctx.settings.verify_fmr)
    pipe = ctx.pipeline(model_id)
    faces = []
    shas = []
    for label, item in (("A", image_a), ("B", image_b)):
        try:
            decoded = ctx.decode(item)
        except FaceVaultError as exc:
            _audit_failure(ctx, exc.code, purpose, case_id)
            raise
        shas.append(decoded.sha256)
        found = pipe.analyze(decoded.pixels)
        if not found:
            _audit_failure(ctx, NoFaceError.code, purpose, case_id)
            raise NoFaceError(f"no face was found in image {label} ({source_name(item)})")
        faces.append(found[0])
    sim = float(faces[0].embedding @ faces[1].embedding)
    cal = calibration.for_model(model_id)
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            Verified(
                purpose=purpose,
                case_id=case_id,
                probe_sha256=shas[0],
                other_sha256=shas[1],
                similarity=round(sim, 5),
                threshold=round(thr, 5),
                same_person=sim >= thr,
            ),
        )
    return VerifyResult(
        model_id=model_id,
        similarity=round(sim, 5),
        threshold=round(thr, 5),
        threshold_fmr=thr_fmr,
        estimated_fmr=float(f"{cal.fmr_at(sim):.3g}"),
        same_person=sim >= thr,
        face_a={"box": faces[0].face.box_list(), "quality": faces[0].quality.to_dict()},
        face_b={"box": faces[1].face.box_list(), "quality": faces[1].quality.to_dict()},
        audit_seq=seq,
    )


def _audit_failure(ctx: ServiceContext, code: str, purpose: str, case_id: str | None) -> None:
    with ctx.write() as conn:
        ctx.log(conn, Verified(purpose=purpose, case_id=case_id, outcome="error", error=code))
