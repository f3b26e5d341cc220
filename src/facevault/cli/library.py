"""``facevault library ...``: photo libraries: index every face of a photo collection, group the faces
into people, name a person only with consent, find every photo of a person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, open_vault, run, with_vault

library_app = typer.Typer(
    help="Photo libraries: every face of a photo collection, grouped into people.", no_args_is_help=True
)
person_app = typer.Typer(help="One person of a library: show, name (with consent), merge, split, hide.")
library_app.add_typer(person_app, name="person")

PersonArg = Annotated[str, typer.Argument(help="The person's number: 12 or '#12'.")]


@library_app.command("create")
def library_create(
    name: str,
    purpose: Annotated[str, typer.Option("--purpose", help="Why the library's faces are indexed.")],
    basis: Annotated[str, typer.Option("--basis", help="The legal basis of the processing.")],
    owner: Annotated[str | None, typer.Option("--owner", help="Who answers for it (default: you).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model pack (default: the vault's).")] = None,
    retention_days: Annotated[
        int, typer.Option("--retention-days", help="Days after a person was last seen.")
    ] = 1095,
    keep_crops: Annotated[
        bool, typer.Option("--keep-crops", help="Keep encrypted face crops (thumbnails).")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a photo library with its declared purpose, legal basis and retention period."""

    def create(v: Any) -> Any:
        return v.libraries.create_library(
            name,
            purpose=purpose,
            basis=basis,
            owner=owner,
            model=model,
            retention_days=retention_days,
            keep_crops=keep_crops,
        )

    emit(
        with_vault(home, as_json, create),
        as_json,
        lambda r: (
            f"library {r['name']!r} created (model {r['model_id']}, retention {r['retention_days']} days)"
        ),
    )


@library_app.command("list")
def library_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the libraries with their photo, face and people counts."""

    def lines(rows: list[Any]) -> Iterator[str]:
        for r in rows:
            counts = f"{r['photos']} photos, {r['faces']} faces, {r['people']} people"
            yield f"{r['name']}: {counts} ({r['purpose']})"

    emit(with_vault(home, as_json, lambda v: v.libraries.list_libraries()), as_json, lines)


@library_app.command("add")
def library_add(
    name: str,
    sources: Annotated[list[Path], typer.Argument(help="Photo files or folders.")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Into sub-folders too.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add photos: every face found is stored and joins the people of the library. Resumable: a re-run
    skips the files already done; one bad file never stops the run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("library add"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[faces]} faces"),
        TimeRemainingColumn(),
        console=console,
        disable=as_json or not console.is_terminal,
    )
    task = bar.add_task("photos", total=None, faces=0)

    def on_progress(c: dict[str, int]) -> None:
        done = c["added"] + c["skipped"] + c["failed"]
        bar.update(task, total=c["photos"], completed=done, faces=c["faces"])

    def action() -> Any:
        with bar, open_vault(home) as v:
            return v.libraries.library_add(
                name, [str(s) for s in sources], recursive=recursive, workers=workers, progress=on_progress
            )

    res = run(as_json, action)
    emit(
        res,
        as_json,
        lambda r: (
            f"{r['added']} photos added ({r['faces']} faces, {r['people_created']} new people), "
            f"{r['skipped']} skipped, {r['failed']} failed, {r['blocked']} faces blocked by opt-outs"
        ),
    )


@library_app.command("people")
def library_people(
    name: str,
    hidden: Annotated[bool, typer.Option("--hidden", help="Include hidden people.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many people.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many people first.")] = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The people of a library, most faces first."""

    def lines(rows: list[Any]) -> Iterator[str]:
        for r in rows:
            flag = " (hidden)" if r["hidden"] else ""
            yield f"#{r['person']} {r['label']}: {r['faces']} faces in {r['photos']} photos{flag}"

    emit(
        with_vault(
            home,
            as_json,
            lambda v: v.libraries.library_people(name, include_hidden=hidden, limit=limit, offset=offset),
        ),
        as_json,
        lines,
    )


@library_app.command("search")
def library_search(
    name: str,
    probe: Path,
    purpose: Annotated[str, typer.Option("--purpose", help="Why this search is run (audited).")],
    case: Annotated[str | None, typer.Option("--case", help="Case id (audited).")] = None,
    fmr: Annotated[float | None, typer.Option("--fmr", help="False-match rate per comparison.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Similarity threshold.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every photo in which the probe's person appears, ranked, with the face's box in each."""

    def lines(r: dict[str, Any]) -> Iterator[str]:
        yield f"audit entry #{r['audit_seq']}; threshold {r['threshold']:.4f} (FMR {r['threshold_fmr']:g})"
        for f in r["faces"]:
            who = f["person_label"] or "nobody in this library"
            yield f"probe face {f['face_index']} {f['box']}: {who}, {f['photos']} photos"
            for m in f["matches"]:
                yield f"  {m['similarity']:.4f}  {m['photo']}  box {m['box']}  ({m['person_label']})"

    def search(v: Any) -> Any:
        return v.libraries.library_search(
            name, str(probe), purpose=purpose, case_id=case, fmr=fmr, threshold=threshold
        )

    emit(with_vault(home, as_json, search), as_json, lines)


@library_app.command("recluster")
def library_recluster(name: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Group every face again (the full pass), keeping the manual decisions."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_recluster(name)),
        as_json,
        lambda r: f"{r['faces']} faces: {r['people_before']} people before, {r['people_after']} after",
    )


# ---- one person ----------------------------------------------------------------------------------------
@person_app.command("show")
def person_show(name: str, person: PersonArg, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A person's record and every face, with the photo it is in."""

    def lines(r: dict[str, Any]) -> Iterator[str]:
        yield f"#{r['person']} {r['label']}: {r['faces']} faces in {r['photos']} photos"
        for f in r["faces_list"]:
            yield f"  face {f['face_id']}: {f['photo']} box {f['box']}{' (pinned)' if f['pinned'] else ''}"

    emit(with_vault(home, as_json, lambda v: v.libraries.library_person(name, person)), as_json, lines)


@person_app.command("name")
def person_name(
    name: str,
    person: PersonArg,
    person_name: Annotated[str, typer.Option("--name", help="The person's name.")],
    purpose: Annotated[str, typer.Option("--purpose", help="What the person consented to.")],
    consent_file: Annotated[
        Path | None, typer.Option("--consent-file", help="Signed consent evidence.")
    ] = None,
    consent_text: Annotated[
        str | None, typer.Option("--consent-text", help="Consent evidence as text.")
    ] = None,
    consent_by: Annotated[str | None, typer.Option("--consent-by", help="Who gave consent.")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Consent end date, YYYY-MM-DD.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Name a person: only with a consent record, exactly as ``subject add``."""

    def act(v: Any) -> Any:
        return v.libraries.library_name_person(
            name,
            person,
            person_name,
            purpose=purpose,
            consent_text=consent_text,
            consent_file=consent_file,
            consent_by=consent_by,
            expires=expires,
        )

    emit(
        with_vault(home, as_json, act),
        as_json,
        lambda r: f"person #{r['person']} named (consent #{r['consent_id']})",
    )


@person_app.command("merge")
def person_merge(
    name: str, person: PersonArg, other: PersonArg, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """OTHER is the same person as PERSON: its faces move to PERSON."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_merge(name, person, other)),
        as_json,
        lambda r: f"person #{r['merged']} merged into #{r['person']} ({r['faces_moved']} faces)",
    )


@person_app.command("split")
def person_split(
    name: str,
    person: PersonArg,
    faces: Annotated[list[int], typer.Argument(help="The face ids to move out into a new person.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move faces out of a person into a new person."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_split(name, person, list(faces))),
        as_json,
        lambda r: f"{r['faces_moved']} faces of #{r['person']} are now person #{r['new_person']}",
    )


@person_app.command("move-face")
def person_move_face(
    name: str,
    face: Annotated[int, typer.Argument(help="The face id.")],
    to: PersonArg,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a face on another person."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_move_face(name, face, to)),
        as_json,
        lambda r: f"face {r['face_id']} is now person #{r['person']}'s",
    )


@person_app.command("remove-face")
def person_remove_face(
    name: str,
    person: PersonArg,
    face: Annotated[int, typer.Argument(help="The face id.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """ "Not this person": the face leaves the person and is never put back."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_remove_face(name, person, face)),
        as_json,
        lambda r: f"face {r['face_id']} removed from #{r['person']} (now person #{r['now_person']})",
    )


@person_app.command("hide")
def person_hide(
    name: str,
    person: PersonArg,
    unhide: Annotated[bool, typer.Option("--unhide", help="Show the person again.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hide a person from the people listing."""
    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_hide(name, person, not unhide)),
        as_json,
        lambda r: f"person #{r['person']} {'hidden' if r['hidden'] else 'shown'}",
    )


@person_app.command("erase")
def person_erase(
    name: str,
    person: PersonArg,
    photos: Annotated[
        str,
        typer.Option(
            "--photos",
            help="The photos the person is in: keep, blur (the person's faces, in the copies the "
            "library keeps) or remove (from the library, for everyone in them).",
        ),
    ] = "keep",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a person: face templates, crops, name and consent record; the photos stay unless --photos
    says otherwise."""

    def lines(r: dict[str, Any]) -> Iterator[str]:
        yield f"person #{r['person']} erased: {r['faces_erased']} faces, {r['crops_erased']} crops"
        yield (
            f"photos: {r['photos_kept']} kept, {r['photos_blurred']} blurred, {r['photos_removed']} removed"
            f" ({r['other_faces_removed']} other faces removed with them)"
        )

    emit(
        with_vault(home, as_json, lambda v: v.libraries.library_erase_person(name, person, photos=photos)),
        as_json,
        lines,
    )
