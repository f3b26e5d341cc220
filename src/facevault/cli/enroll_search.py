"""``facevault enroll``, ``search`` and ``verify``: the biometric commands."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import click
import typer

from .output import HomeOpt, JsonOpt, emit, exclusive, jsonable, open_vault, run, state, with_vault

# Enrollment finished, but some images were rejected (the others are enrolled).
EXIT_PARTIAL = 10


def enroll(
    collection: str,
    subject: str,
    images: Annotated[list[str], typer.Argument(help="Image files of this one person.")],
    largest: Annotated[
        bool, typer.Option("--largest", help="Use the largest face when there are several.")
    ] = False,
    anyway: Annotated[
        bool,
        typer.Option(
            "--anyway",
            help="Enroll faces that resemble another subject of the collection (only if you are sure "
            "the photo shows this person); identity conflicts are refused all the same.",
        ),
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Detect, quality-check, align, embed and store one face per image. A face that resembles another
    subject (a search would name them) is refused as resembles_another_subject unless --anyway. Exit
    code 10 if any image was rejected (the others are still enrolled)."""

    def run_enroll(v: Any) -> Any:
        how = v.enroll_anyway if anyway else v.enroll
        return how(collection, subject, images, largest=largest)

    outcomes = with_vault(home, as_json, run_enroll)
    emit(outcomes, as_json, lambda rows: _outcomes(rows, collection, subject))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_PARTIAL)


RESEMBLES = "resembles_another_subject"


def _outcomes(rows: list[Any], collection: str, subject: str) -> Iterator[str]:
    yield from map(_outcome, rows)
    warned = [o.image for o in rows if o.reason == RESEMBLES]
    if warned:
        photos = " ".join(shlex.quote(p) for p in warned)
        one = len(warned) == 1
        yield (
            f"warning: {len(warned)} {'photo looks' if one else 'photos look'} like another person in this "
            f"collection and {'was' if one else 'were'} not enrolled. A wrong photo makes searches name the "
            f"wrong person: check {'it' if one else 'them'}, and enroll only what shows this person with"
        )
        yield f"  facevault enroll {shlex.quote(collection)} {shlex.quote(subject)} --anyway {photos}"


def _outcome(o: Any) -> str:
    if o.ok:
        line = f"enrolled  {o.image}  sample #{o.sample_id}  quality {o.quality['overall']:.2f}"
        return f"{line}  ({o.message})" if o.message else line
    if o.reason == RESEMBLES:
        return (
            f"WARNING   {o.image}  {o.reason}: {o.message}; not enrolled (use --anyway if it is this person)"
        )
    return f"rejected  {o.image}  {o.reason}: {o.message}"


def search(
    collection: str,
    purpose: Annotated[str, typer.Option("--purpose", help="Why this search is run (recorded).")],
    probes: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PROBE", help="Probe photo(s); several are searched one by one in this process."
        ),
    ] = None,
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest", help="Text file of probe paths, one per line (relative to the file's folder)."
        ),
    ] = None,
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
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes that analyse many probes (default: one per core).", min=1),
    ] = None,
    draw: Annotated[
        str | None,
        typer.Option("--draw", help="Also write the probe with names on its faces to this JPEG file."),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-set 1:N search of every face in PROBE. No candidates means: not in this gallery.

    Several probes (or --manifest): one search (and audit entry) per probe, with --json one JSON line
    per probe; exit code 10 if any probe failed (the others are still searched)."""
    exclusive(as_json, {"--fmr": fmr, "--threshold": threshold})
    probes = probes or []
    if bool(probes) == (manifest is not None):
        raise typer.BadParameter("give PROBE... or --manifest FILE (one of them)")
    from .draw import check, drawn

    check(draw, probes, manifest)
    options: dict[str, Any] = {"case_id": case, "top_k": top, "fmr": fmr, "threshold": threshold}
    if manifest is None and len(probes) == 1:
        from ..service.prefetch import ProbeAnalysis  # light: starts the probe's analysis in a child

        with ProbeAnalysis.start(probes[0], home or state["home"]) as analysis:
            res = with_vault(
                home,
                as_json,
                lambda v: drawn(
                    v,
                    v.search(collection, probes[0], purpose=purpose, analysis=analysis, **options),
                    probes[0],
                    draw,
                ),
            )
        emit(res, as_json, _found)
        return
    options["workers"] = workers
    failed = run(as_json, lambda: _search_many(collection, probes, manifest, purpose, options, home, as_json))
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def _search_many(
    collection: str,
    probes: list[str],
    manifest: str | None,
    purpose: str,
    options: dict[str, Any],
    home: str | None,
    as_json: bool,
) -> int:
    """Search every probe, printing each result as it comes; returns how many probes failed."""
    from ..errors import FaceVaultError
    from ..service.search_many import read_manifest

    paths = read_manifest(manifest) if manifest is not None else probes
    failed = 0
    with (
        open_vault(home) as vault,
        click.progressbar(
            length=len(paths), label="searching", file=sys.stderr, hidden=not sys.stderr.isatty()
        ) as bar,
    ):
        for probe, res in vault.search_many(collection, paths, purpose=purpose, **options):
            failed += isinstance(res, FaceVaultError)
            bar.update(1)
            _print_probe(str(probe), res, as_json, isinstance(res, FaceVaultError))
    searched = len(paths) - failed
    typer.echo(f"searched {searched} of {len(paths)} probes; {failed} failed", err=True)
    return failed


def _print_probe(probe: str, res: Any, as_json: bool, error: bool) -> None:
    """One probe's outcome: a JSON line, or a block of text (a search result or its ``error``)."""
    found = not error
    if as_json:
        line = {"probe": probe, **(res.to_dict() if found else {"error": res.to_dict()})}
        typer.echo(json.dumps(jsonable(line), default=str, ensure_ascii=False))
        return
    typer.echo(f"== {probe}")
    if found:
        for text in _found(res):
            typer.echo(text)
    else:
        typer.echo(f"error [{res.code}]: {res.message}")
    typer.echo("")


def _found(res: Any) -> Iterator[str]:
    from ..service.annotate import summary

    yield summary(res)
    yield (
        f"threshold {res.threshold:.4f} (false-match rate {res.threshold_fmr:.0e} per comparison); "
        f"audit entry #{res.audit_seq}"
    )
    for face in res.faces:  # left to right (face_index 0 is the leftmost); numbered from 1 as in the summary
        yield f"face {face.face_index + 1} (from the left) at {face.box}:"
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
