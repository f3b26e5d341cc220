"""``facevault detect``: where the faces of a photo are and how good they are, never who they are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, run, with_vault


def detect(
    photo: Annotated[str, typer.Argument(help="The photo to look at.")],
    draw: Annotated[
        str | None, typer.Option("--draw", help="Also write the photo with the boxes drawn (JPEG) here.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model pack (default: the vault's).")] = None,
    detector: Annotated[
        str | None,
        typer.Option("--detector", help="Another detector than the pack's own (see `models list`)."),
    ] = None,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Why (recorded).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every face in PHOTO with box, landmarks, detector score and quality, and the reasons enrollment
    would refuse it. No identity, nothing stored; the look is recorded in the audit log."""
    res = with_vault(
        home,
        as_json,
        lambda v: v.detect(photo, model=model, detector=detector, purpose=purpose, draw=bool(draw)),
    )
    if draw:
        run(as_json, lambda: _write(Path(draw), res.drawn_jpeg))
    emit(res, as_json, _faces)


def _write(path: Path, data: bytes) -> None:
    from ..errors import InputError

    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})", code="not_writable") from None


def _faces(res: Any) -> Iterator[str]:
    yield (
        f"{len(res.faces)} face(s) in a {res.width}x{res.height} photo ({res.detector}); "
        f"audit entry #{res.audit_seq}"
    )
    for f in res.faces:
        q = f.quality
        verdict = "enrollable" if f.enrollable else "not enrollable: " + ", ".join(f.reasons)
        yield (
            f"face {f.face_index} at {f.box}: score {f.detector_score:.2f}, eyes {q['eye_distance']:.0f} px "
            f"apart, yaw {q['yaw']:.0f}°, roll {q['roll']:.0f}°, sharpness {q['sharpness']:.1f}, "
            f"quality {q['overall']:.2f}; {verdict}"
        )
