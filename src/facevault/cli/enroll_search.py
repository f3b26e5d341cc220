"""``facevault enroll``, ``search`` and ``verify``: the biometric commands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, exclusive, with_vault

# Enrollment finished, but some images were rejected (the others are enrolled).
EXIT_PARTIAL = 10


def enroll(
    collection: str,
    subject: str,
    images: Annotated[list[str], typer.Argument(help="Image files of this one person.")],
    largest: Annotated[
        bool, typer.Option("--largest", help="Use the largest face when there are several.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Detect, quality-check, align, embed and store one face per image. Exit code 10 if any image was
    rejected (the others are still enrolled)."""

    outcomes = with_vault(home, as_json, lambda v: v.enroll(collection, subject, images, largest=largest))
    emit(outcomes, as_json, lambda rows: map(_outcome, rows))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_PARTIAL)


def _outcome(o: Any) -> str:
    if o.ok:
        return f"enrolled  {o.image}  sample #{o.sample_id}  quality {o.quality['overall']:.2f}"
    return f"rejected  {o.image}  {o.reason}: {o.message}"


def search(
    collection: str,
    probe: str,
    purpose: Annotated[str, typer.Option("--purpose", help="Why this search is run (recorded).")],
    case: Annotated[str | None, typer.Option("--case", help="Case or ticket id (recorded).")] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            help="Candidates per face (at most 1000; API keys below admin: search_max_top, 20 by default).",
        ),
    ] = 5,
    fmr: Annotated[
        float | None,
        typer.Option(
            "--fmr",
            help="Target false-match rate per comparison (default: 1% FPIR / gallery size, at most 1e-3).",
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Similarity threshold.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-set 1:N search of every face in PROBE. No candidates means: not in this gallery."""
    exclusive(as_json, {"--fmr": fmr, "--threshold": threshold})
    res = with_vault(
        home,
        as_json,
        lambda v: v.search(
            collection, probe, purpose=purpose, case_id=case, top_k=top, fmr=fmr, threshold=threshold
        ),
    )
    emit(res, as_json, _found)


def _found(res: Any) -> Iterator[str]:
    yield (
        f"threshold {res.threshold:.4f} (false-match rate {res.threshold_fmr:.0e} per comparison); "
        f"audit entry #{res.audit_seq}"
    )
    for face in res.faces:
        yield f"face {face.face_index} at {face.box}:"
        if not face.searched:
            yield f"  not searched: {face.skipped_reason}"
        elif not face.candidates:
            yield "  no match in this gallery"
        for rank, c in enumerate(face.candidates, 1):
            yield (
                f"  {rank}. #{c.subject_id} {c.name}  similarity {c.similarity:.4f}  "
                f"est. false-match rate {c.estimated_fmr:.1e}"
            )
            for s in c.samples:
                yield f"       sample #{s.sample_id} {s.similarity:.4f}  {s.image}  box {s.box}"


def verify(
    image_a: str,
    image_b: str,
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    purpose: Annotated[str, typer.Option("--purpose", help="Why (recorded).")] = "verification",
    fmr: Annotated[
        float | None, typer.Option("--fmr", help="Target false-match rate (default 1e-3).")
    ] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Similarity threshold.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """1:1 verification: are the largest faces of the two images the same person?"""
    exclusive(as_json, {"--fmr": fmr, "--threshold": threshold})
    res = with_vault(
        home,
        as_json,
        lambda v: v.verify(image_a, image_b, model=model, purpose=purpose, fmr=fmr, threshold=threshold),
    )
    emit(res, as_json, _verdict)


def _verdict(res: Any) -> str:
    verdict = "SAME person" if res.same_person else "DIFFERENT people"
    return (
        f"{verdict}: similarity {res.similarity:.4f}, threshold {res.threshold:.4f} "
        f"(false-match rate {res.threshold_fmr:.0e})"
    )
