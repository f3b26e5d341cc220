"""``facevault subject ...``: add, list, show, erase and delete subjects (each with a consent record)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, with_vault

subject_app = typer.Typer(
    help="Add, list, show and delete subjects (each with a consent record).", no_args_is_help=True
)

# One syntax for naming a subject, in every command (docs/CLI.md "Naming a subject").
SubjectArg = Annotated[
    str,
    typer.Argument(
        help="id:12 (or '#12', quoted) for the id, ext:E-12 for the external id, name:'Ann Lee' for the "
        "exact name; a bare value must name exactly one subject by any of the three, else it is refused "
        "as ambiguous.",
    ),
]


@subject_app.command("add")
def subject_add(
    collection: str,
    name: Annotated[str, typer.Option("--name", help="The person's name.")],
    purpose: Annotated[str, typer.Option("--purpose", help="What the person consented to.")],
    consent_file: Annotated[
        Path | None, typer.Option("--consent-file", help="Signed consent evidence.")
    ] = None,
    consent_text: Annotated[
        str | None, typer.Option("--consent-text", help="Consent evidence as text.")
    ] = None,
    consent_by: Annotated[
        str | None, typer.Option("--consent-by", help="Who gave consent (default: NAME).")
    ] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Consent end date, YYYY-MM-DD.")] = None,
    external_id: Annotated[
        str | None, typer.Option("--external-id", help="Your own id for the person.")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a subject together with the consent record that allows it to exist."""

    def add(v: Any) -> Any:
        return v.add_subject(
            collection,
            name,
            purpose=purpose,
            consent_text=consent_text,
            consent_file=consent_file,
            consent_by=consent_by,
            expires=expires,
            external_id=external_id,
        )

    emit(
        with_vault(home, as_json, add),
        as_json,
        lambda subj: (
            f"subject #{subj['id']} {subj['name']!r} added to {collection!r} "
            f"(consent sha256 {subj['consent']['evidence_sha256'][:12]}…)"
        ),
    )


@subject_app.command("list")
def subject_list(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the subjects of a collection."""

    emit(with_vault(home, as_json, lambda v: v.list_subjects(collection)), as_json, _table)


def _table(rows: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "external id", "samples")
    for r in rows:
        table.add_row(f"#{r['id']}", r["name"], r["external_id"] or "", str(r["samples"]))
    Console().print(table)


@subject_app.command("show")
def subject_show(
    collection: str, subject: SubjectArg, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a subject, its consent record and its samples."""

    emit(with_vault(home, as_json, lambda v: v.get_subject(collection, subject)), as_json, _shown)


def _shown(s: Any) -> Iterator[str]:
    c = s["consent"]
    yield f"#{s['id']} {s['name']}  (collection {s['collection']}, external id {s['external_id'] or '-'})"
    yield (
        f"consent: {c['purpose']!r} granted by {c['granted_by']} at {c['granted_at']}, "
        f"expires {c['expires_at'] or 'never'}, evidence {c['evidence_kind']} sha256 {c['evidence_sha256']}"
    )
    for smp in s["samples"]:
        yield (
            f"  sample #{smp['sample_id']}  {smp['image']}  box {smp['box']}  "
            f"quality {smp['quality'].get('overall')}"
        )


@subject_app.command("erase")
def subject_erase(
    collection: str, subject: SubjectArg, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """Erase every template, sample, image record, index entry and the consent record of a subject, and
    write an erasure receipt to the audit log."""

    emit(
        with_vault(home, as_json, lambda v: v.erase_subject(collection, subject)),
        as_json,
        lambda res: (
            f"erased subject #{res['subject_id']} {res['name']!r}: {res['samples_erased']} samples, "
            f"{res['images_erased']} image records; receipt in audit entry #{res['audit_seq']}"
        ),
    )


@subject_app.command("delete")
def subject_delete(
    collection: str, subject: SubjectArg, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a subject with every sample and its consent record."""

    emit(
        with_vault(home, as_json, lambda v: v.delete_subject(collection, subject)),
        as_json,
        lambda res: (
            f"deleted subject #{res['subject_id']} {res['name']!r} ({res['samples_removed']} samples)"
        ),
    )


@subject_app.command("sample-delete")
def subject_sample_delete(
    collection: str,
    subject: SubjectArg,
    sample_id: Annotated[int, typer.Argument(help="The sample to erase (see `subject show`).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase one wrong sample of SUBJECT (with an erasure receipt); the subject stays."""
    receipt = with_vault(home, as_json, lambda v: v.erase_sample(collection, subject, sample_id))
    emit(
        receipt,
        as_json,
        lambda r: f"erased sample #{sample_id} of {r['name']} (receipt: audit entry #{r['audit_seq']})",
    )


@subject_app.command("sample-move")
def subject_sample_move(
    collection: str,
    subject: SubjectArg,
    sample_id: Annotated[int, typer.Argument(help="The sample to move (see `subject show`).")],
    to: Annotated[str, typer.Option("--to", help="The subject the photo really shows (same syntax).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move one sample of SUBJECT to the subject it really shows."""
    moved = with_vault(home, as_json, lambda v: v.move_sample(collection, subject, sample_id, to))
    emit(moved, as_json, lambda r: f"moved sample #{sample_id} from {r['from_name']} to {r['to_name']}")
