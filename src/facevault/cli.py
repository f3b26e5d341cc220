"""The ``facevault`` command: parse -> service -> print. Nothing else lives here.

Heavy modules (numpy, SQLAlchemy, models) are imported inside the commands so ``--help`` is instant.
Exit codes: 0 success; 1 unexpected error; 2 configuration; 3 bad input (including a probe without a
face); 4 not found; 5 conflict; 6 model mismatch; 7 consent or purpose missing; 8 integrity problem;
9 model unavailable; 10 enrollment finished but some images were rejected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .cli_common import fail as _fail
from .cli_common import print_json as _print_json
from .cli_common import run as _run
from .cli_common import state as _state
from .cli_common import with_vault as _with_vault

if TYPE_CHECKING:
    from .service import Vault

EXIT_PARTIAL = 10

app = typer.Typer(
    name="facevault",
    help="Self-hosted face search with consent, erasure and an audit trail built in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
collection_app = typer.Typer(
    help="Create, list, change, migrate and delete collections.", no_args_is_help=True
)
subject_app = typer.Typer(
    help="Add, list, show and delete subjects (each with a consent record).", no_args_is_help=True
)
audit_app = typer.Typer(help="Read and verify the append-only audit log.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluation protocols on labelled face datasets.", no_args_is_help=True)
index_app = typer.Typer(help="Inspect, rebuild and tune a collection's vector index.", no_args_is_help=True)
app.add_typer(index_app, name="index")
consent_app = typer.Typer(
    help="Show or withdraw a subject's consent (withdrawal erases at once).", no_args_is_help=True
)
retention_app = typer.Typer(help="The retention policy and the sweep that enforces it.", no_args_is_help=True)
report_app = typer.Typer(help="Reports for accountability (GDPR Art. 30).", no_args_is_help=True)
app.add_typer(consent_app, name="consent")
app.add_typer(retention_app, name="retention")
app.add_typer(report_app, name="report")
app.add_typer(collection_app, name="collection")
app.add_typer(subject_app, name="subject")
app.add_typer(audit_app, name="audit")
app.add_typer(eval_app, name="eval")


HomeOpt = Annotated[
    str | None,
    typer.Option("--home", envvar="FACEVAULT_HOME", help="Vault folder (default ./facevault-data)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON (see docs/CLI.md).")]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _vault(home: str | None) -> Vault:
    from .service import open_vault

    return open_vault(home or _state["home"], db=_state.get("db"))


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="FACEVAULT_DB", help="Store URL, e.g. postgresql://... (default: SQLite in the home)."
    ),
]


@app.callback()
def _main(home: HomeOpt = None, db: DbOpt = None) -> None:
    _state["home"] = home
    _state["db"] = db


@app.command()
def init(
    home: HomeOpt = None,
    index: Annotated[
        str | None,
        typer.Option(
            "--index",
            envvar="FACEVAULT_INDEX",
            help="Index backend: faiss (default), faiss:flat|hnsw|ivfpq, milvus://PATH.db, milvus+http://HOST:PORT.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an embedded vault (SQLite store + vector index) under --home."""

    def action() -> dict[str, Any]:
        from .service import open_vault

        with open_vault(home or _state["home"], create=True, index=index, db=_state.get("db")) as v:
            return {
                "home": str(v.settings.home.resolve()),
                "database": v.store.display_url,
                "index_dir": str(v.settings.index_dir),
                "index": v.index_backend,
            }

    info = _run(as_json, action)
    if as_json:
        _print_json(info)
    else:
        typer.echo(f"vault ready at {info['home']}")


# ---- collections -------------------------------------------------------------------------------------
@collection_app.command("create")
def collection_create(
    name: str,
    model: Annotated[str | None, typer.Option(help="Embedding model the collection is pinned to.")] = None,
    purpose: Annotated[
        str | None, typer.Option(help="Why this gallery exists (records of processing).")
    ] = None,
    legal_basis: Annotated[
        str | None, typer.Option("--legal-basis", help="Legal basis of processing.")
    ] = None,
    retention_days: Annotated[
        int,
        typer.Option(
            "--retention-days", help="Destroy a person's data this long after their last interaction."
        ),
    ] = 1095,
    keep_crops: Annotated[
        bool,
        typer.Option(
            "--keep-crops",
            help="Keep an encrypted face crop of every enrolled sample, so the collection can later be "
            "migrated to another model pack (off by default; see docs/PRIVACY.md).",
        ),
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a collection pinned to one embedding model."""

    def action() -> dict[str, Any]:
        with _vault(home) as v:
            row = v.create_collection(
                name,
                model,
                purpose=purpose,
                legal_basis=legal_basis,
                retention_days=retention_days,
                keep_crops=keep_crops,
            )
            return {
                "name": row["name"],
                "model_id": row["model_id"],
                "dim": row["dim"],
                "keep_crops": bool(row["keep_crops"]),
            }

    row = _run(as_json, action)
    if as_json:
        _print_json(row)
    else:
        crops = ", keeping face crops" if row["keep_crops"] else ""
        typer.echo(f"collection {row['name']!r} created (model {row['model_id']}, {row['dim']}-d{crops})")


@collection_app.command("list")
def collection_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their model and counts."""

    def action() -> list[dict[str, Any]]:
        with _vault(home) as v:
            return [
                {
                    "name": c["name"],
                    "model_id": c["model_id"],
                    "subjects": c["subjects"],
                    "samples": c["samples"],
                    "keep_crops": bool(c["keep_crops"]),
                }
                for c in v.list_collections()
            ]

    rows = _run(as_json, action)
    if as_json:
        _print_json(rows)
        return
    from rich.table import Table

    table = Table("collection", "model", "subjects", "samples", "crops")
    for r in rows:
        crops = "kept" if r["keep_crops"] else "-"
        table.add_row(r["name"], r["model_id"], str(r["subjects"]), str(r["samples"]), crops)
    _console().print(table)


@collection_app.command("set")
def collection_set(
    name: str,
    keep_crops: Annotated[
        bool | None,
        typer.Option(
            "--keep-crops/--no-keep-crops",
            help="Keep encrypted face crops of samples enrolled from now on, or stop and delete every crop "
            "the collection holds (audited).",
        ),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a collection's settings."""
    if keep_crops is None:
        from .errors import ConfigError

        raise _fail(ConfigError("nothing to change: give --keep-crops or --no-keep-crops"), as_json)
    res = _with_vault(home, as_json, lambda v: v.set_keep_crops(name, keep_crops))
    if as_json:
        _print_json(res)
    elif res["keep_crops"]:
        typer.echo(f"collection {name!r} keeps face crops of samples enrolled from now on")
    else:
        typer.echo(f"collection {name!r} keeps no face crops; {res['crops_deleted']} deleted")


@collection_app.command("migrate")
def collection_migrate(
    name: str,
    to: Annotated[str, typer.Option("--to", help="The installed model pack to move the collection to.")],
    workers: Annotated[
        int | None, typer.Option(help="Processes for re-embedding (default: one per core).")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every sample from its stored face crop with another model pack and pin the collection
    to it (needs --keep-crops from the first enrollment on)."""
    show = not as_json and sys.stderr.isatty()

    def migrate(v: Any) -> dict[str, Any]:
        if not show:
            return v.migrate_collection(name, to, workers=workers)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "re-embedding", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        ) as bar:
            task = bar.add_task("crops", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return v.migrate_collection(name, to, workers=workers, progress=tick)

    res = _with_vault(home, as_json, migrate)
    if as_json:
        _print_json(res)
        return
    typer.echo(
        f"collection {name!r} moved from {res['from_model']} to {res['to_model']} ({res['dim']}-d): "
        f"{res['samples']} samples re-embedded, {res['indexed']} indexed"
    )
    if res["located_by_fallback"]:
        typer.echo(
            f"{res['located_by_fallback']} faces were not found again by the new detector; their landmarks "
            "were placed in the stored face box"
        )
    if res["optout_models"]:
        typer.echo(
            "opt-outs recorded with " + ", ".join(res["optout_models"]) + " still apply to this collection: "
            "keep those packs installed (enrollments are checked against them)"
        )


@collection_app.command("delete")
def collection_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a collection with all its subjects, consent records and samples."""
    if not yes and not typer.confirm(f"Delete collection {name!r} and everything in it?"):
        raise typer.Exit(1)

    counts = _with_vault(home, as_json, lambda v: v.delete_collection(name))
    if as_json:
        _print_json({"deleted": name, **counts})
    else:
        typer.echo(f"deleted collection {name!r}: {counts}")


# ---- subjects ----------------------------------------------------------------------------------------
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

    def action() -> dict[str, Any]:
        with _vault(home) as v:
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

    subj = _run(as_json, action)
    if as_json:
        _print_json(subj)
    else:
        typer.echo(
            f"subject #{subj['id']} {subj['name']!r} added to {collection!r} "
            f"(consent sha256 {subj['consent']['evidence_sha256'][:12]}…)"
        )


@subject_app.command("list")
def subject_list(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the subjects of a collection."""

    rows = _with_vault(home, as_json, lambda v: v.list_subjects(collection))
    if as_json:
        _print_json(rows)
        return
    from rich.table import Table

    table = Table("id", "name", "external id", "samples")
    for r in rows:
        table.add_row(f"#{r['id']}", r["name"], r["external_id"] or "", str(r["samples"]))
    _console().print(table)


@subject_app.command("show")
def subject_show(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Show a subject, its consent record and its samples."""

    s = _with_vault(home, as_json, lambda v: v.get_subject(collection, subject))
    if as_json:
        _print_json(s)
        return
    c = s["consent"]
    typer.echo(
        f"#{s['id']} {s['name']}  (collection {s['collection']}, external id {s['external_id'] or '-'})"
    )
    typer.echo(
        f"consent: {c['purpose']!r} granted by {c['granted_by']} at {c['granted_at']}, "
        f"expires {c['expires_at'] or 'never'}, evidence {c['evidence_kind']} sha256 {c['evidence_sha256']}"
    )
    for smp in s["samples"]:
        typer.echo(
            f"  sample #{smp['sample_id']}  {smp['image']}  box {smp['box']}  "
            f"quality {smp['quality'].get('overall')}"
        )


@subject_app.command("erase")
def subject_erase(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Erase every template, sample, image record, index entry and the consent record of a subject, and
    write an erasure receipt to the audit log."""

    res = _with_vault(home, as_json, lambda v: v.erase_subject(collection, subject))
    if as_json:
        _print_json(res)
    else:
        typer.echo(
            f"erased subject #{res['subject_id']} {res['name']!r}: {res['samples_erased']} samples, "
            f"{res['images_erased']} image records; receipt in audit entry #{res['audit_seq']}"
        )


@subject_app.command("delete")
def subject_delete(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a subject with every sample and its consent record."""

    res = _with_vault(home, as_json, lambda v: v.delete_subject(collection, subject))
    if as_json:
        _print_json(res)
    else:
        typer.echo(f"deleted subject #{res['subject_id']} {res['name']!r} ({res['samples_removed']} samples)")


# ---- enroll / search / verify ------------------------------------------------------------------------
@app.command()
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

    outcomes = _with_vault(home, as_json, lambda v: v.enroll(collection, subject, images, largest=largest))
    if as_json:
        _print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            if o.ok:
                typer.echo(f"enrolled  {o.image}  sample #{o.sample_id}  quality {o.quality['overall']:.2f}")
            else:
                typer.echo(f"rejected  {o.image}  {o.reason}: {o.message}")
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def search(
    collection: str,
    probe: str,
    purpose: Annotated[str, typer.Option("--purpose", help="Why this search is run (recorded).")],
    case: Annotated[str | None, typer.Option("--case", help="Case or ticket id (recorded).")] = None,
    top: Annotated[int, typer.Option("--top", help="Candidates per face.")] = 5,
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
    if fmr is not None and threshold is not None:
        raise _fail(ValueError("give --fmr or --threshold, not both"), as_json)

    def action() -> Any:
        with _vault(home) as v:
            return v.search(
                collection, probe, purpose=purpose, case_id=case, top_k=top, fmr=fmr, threshold=threshold
            )

    res = _run(as_json, action)
    if as_json:
        _print_json(res.to_dict())
        return
    typer.echo(
        f"threshold {res.threshold:.4f} (false-match rate {res.threshold_fmr:.0e} per comparison); "
        f"audit entry #{res.audit_seq}"
    )
    for face in res.faces:
        typer.echo(f"face {face.face_index} at {face.box}:")
        if not face.searched:
            typer.echo(f"  not searched: {face.skipped_reason}")
        elif not face.candidates:
            typer.echo("  no match in this gallery")
        for rank, c in enumerate(face.candidates, 1):
            typer.echo(
                f"  {rank}. #{c.subject_id} {c.name}  similarity {c.similarity:.4f}  "
                f"est. false-match rate {c.estimated_fmr:.1e}"
            )
            for s in c.samples:
                typer.echo(f"       sample #{s.sample_id} {s.similarity:.4f}  {s.image}  box {s.box}")


@app.command()
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

    res = _with_vault(
        home,
        as_json,
        lambda v: v.verify(image_a, image_b, model=model, purpose=purpose, fmr=fmr, threshold=threshold),
    )
    if as_json:
        _print_json(res.to_dict())
        return
    verdict = "SAME person" if res.same_person else "DIFFERENT people"
    typer.echo(
        f"{verdict}: similarity {res.similarity:.4f}, threshold {res.threshold:.4f} "
        f"(false-match rate {res.threshold_fmr:.0e})"
    )


@app.command()
def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild bad indexes from the store.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that the store and the indexes agree and that the audit chain is intact."""

    rep = _with_vault(home, as_json, lambda v: v.doctor(repair=repair))
    if as_json:
        _print_json(rep.to_dict())
    else:
        for c in rep.collections:
            state = "ok" if not c["problems"] else ("repaired" if c["repaired"] else "PROBLEM")
            typer.echo(f"{c['collection']}: {state} ({c['samples']} samples, {c['indexed']} indexed)")
            for p in c["problems"]:
                typer.echo(f"  - {p}")
        a = rep.audit
        typer.echo(
            "audit log: ok" if a["ok"] else f"audit log: BROKEN at entry {a['first_bad_seq']}: {a['problem']}"
        )
    if not rep.ok:
        raise typer.Exit(8)


# ---- audit -------------------------------------------------------------------------------------------
@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="Most recent entries to show.")] = 20,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the most recent audit entries."""

    rows = _with_vault(home, as_json, lambda v: v.audit_entries(limit))
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(
            f"#{r['seq']} {r['at']} {r['action']} by {r['actor']} purpose={r['purpose']!r} "
            f"case={r['case_id']} collection={r['collection']}"
        )


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date or time (exclusive).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    home: HomeOpt = None,
) -> None:
    """Export audit entries, oldest first (the export itself is audited)."""

    def action() -> str:
        from .service import _parse_expiry

        with _vault(home) as v:
            return v.audit_export(since=_parse_expiry(since), until=_parse_expiry(until), fmt=fmt)

    typer.echo(_run(False, action), nl=False)


@audit_app.command("verify")
def audit_verify(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain; exit code 8 names the first broken entry."""

    st = _with_vault(home, as_json, lambda v: v.verify_audit())
    if as_json:
        _print_json(st.to_dict())
    elif st.ok:
        typer.echo(f"audit chain intact ({st.entries} entries)")
    else:
        typer.echo(f"audit chain BROKEN at entry {st.first_bad_seq}: {st.problem}")
    if not st.ok:
        raise typer.Exit(8)


# ---- consent, retention, opt-out, review, reports -------------------------------------------------------
@consent_app.command("show")
def consent_show(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A subject's consent record."""

    _print_json(_with_vault(home, as_json, lambda v: v.consent_show(collection, subject)))


@consent_app.command("withdraw")
def consent_withdraw(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw consent: the subject's biometric data is erased at once."""

    res = _with_vault(home, as_json, lambda v: v.withdraw_consent(collection, subject))
    if as_json:
        _print_json(res)
    else:
        typer.echo(
            f"consent withdrawn; erased {res['samples_erased']} samples of #{res['subject_id']} "
            f"(receipt: audit entry #{res['audit_seq']})"
        )


@retention_app.command("policy")
def retention_policy(home: HomeOpt = None) -> None:
    """Print the written retention and destruction policy (public under BIPA 15(a))."""

    typer.echo(_with_vault(home, False, lambda v: v.retention_policy()))


@retention_app.command("set")
def retention_set(
    collection: str,
    days: Annotated[int, typer.Argument(help="Days after a person's last interaction (1-1095).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a collection's retention period."""

    _print_json(_with_vault(home, as_json, lambda v: v.set_retention(collection, days)))


@retention_app.command("sweep")
def retention_sweep(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Destroy every person's data that is due (consent expired or withdrawn, retention period over)."""

    res = _with_vault(home, as_json, lambda v: v.retention_sweep())
    if as_json:
        _print_json(res)
        return
    typer.echo(f"retention sweep: {len(res['erased'])} subject(s) erased")
    for r in res["erased"]:
        typer.echo(f"  {r['collection']} #{r['subject_id']}: {r['reason']} ({r['samples_erased']} samples)")


@app.command()
def optout(
    photo: str,
    collection: Annotated[str | None, typer.Option("--collection", help="Only this collection.")] = None,
    all_collections: Annotated[bool, typer.Option("--all", help="Every collection (the default).")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find and erase me: erase every subject matching the face in PHOTO at the strict threshold and block
    future enrollments of that face."""
    if collection and all_collections:
        raise _fail(ValueError("give --collection or --all, not both"), as_json)

    res = _with_vault(home, as_json, lambda v: v.optout(photo, collection=collection))
    if as_json:
        _print_json(res)
    else:
        typer.echo(
            f"opted out ({res['scope']}): erased {len(res['erased'])} subject(s); future enrollments of "
            f"this face are refused. Audit entry #{res['audit_seq']}."
        )


@app.command()
def review(
    case: str,
    candidate: Annotated[int | None, typer.Option("--candidate", help="Candidate id or subject id.")] = None,
    decision: Annotated[str | None, typer.Option("--decision", help="confirm or reject")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Your name (recorded).")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Human review of a case's search candidates. Without --decision, show the case. A match counts as
    confirmed only after two different reviewers confirm it."""

    def action() -> dict[str, Any]:
        with _vault(home) as v:
            if decision is None:
                return v.review_status(case)
            if candidate is None or reviewer is None:
                from .errors import InputError

                raise InputError("--candidate and --reviewer are required with --decision")
            return v.review(case, candidate, decision, reviewer, note)

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
        return
    rows = res.get("candidates", [res])
    for c in rows:
        typer.echo(
            f"candidate {c['candidate_id']}: #{c['subject_id']} {c['name']} ({c['similarity']:.4f}) "
            f"{c['state']}; confirmed by {', '.join(c['confirmed_by']) or '-'}; "
            f"rejected by {', '.join(c['rejected_by']) or '-'}"
        )


@report_app.command("processing")
def report_processing(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The GDPR Art. 30 record of processing activities."""

    rec = _with_vault(home, as_json, lambda v: v.processing_record())
    if as_json:
        _print_json(rec)
        return
    typer.echo("Record of processing activities (GDPR Art. 30)")
    typer.echo(f"Controller: {rec['controller']}")
    typer.echo("Categories of data: " + "; ".join(rec["categories_of_data"]))
    for c in rec["collections"]:
        typer.echo(
            f"Collection {c['name']}: purpose {c['purpose'] or 'not stated'}; "
            f"legal basis {c['legal_basis']}; "
            f"{c['subjects']} people, {c['samples']} templates; retention "
            f"{c['retention_days_after_last_interaction']} days after last interaction"
        )
    typer.echo("Recipients (roles): " + ", ".join(rec["recipients"]["roles"]))
    typer.echo(f"Transfers: {rec['transfers']}")
    typer.echo("Security measures:")
    for m in rec["security_measures"]:
        typer.echo(f"  - {m}")


def keys_rotate(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Re-protect every stored template under a new key; the old key is destroyed, so templates stolen
    before the rotation no longer match anything."""

    res = _with_vault(home, as_json, lambda v: v.rotate_keys())
    if as_json:
        _print_json(res)
    else:
        typer.echo(
            f"template key rotated v{res['from_version']} -> v{res['to_version']}: "
            f"{res['samples']} templates and {res['optouts']} opt-outs re-protected"
        )


# ---- index ---------------------------------------------------------------------------------------------
@index_app.command("info")
def index_info(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Backend, kind, size, memory and search settings of a collection's index."""

    _print_json(_with_vault(home, as_json, lambda v: v.index_info(collection)))


@index_app.command("rebuild")
def index_rebuild(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Rebuild a collection's index from the store."""

    res = _with_vault(home, as_json, lambda v: v.index_rebuild(collection))
    if as_json:
        _print_json(res)
    else:
        typer.echo(f"rebuilt the index of {collection!r}: {res['indexed']} vectors")


@index_app.command("tune")
def index_tune(
    collection: str,
    settings: Annotated[list[str], typer.Argument(help="KEY=VALUE, e.g. nprobe=256 ef_search=128 kind=hnsw")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change index settings (saved with the index)."""

    def action() -> dict[str, Any]:
        from .errors import InputError

        values: dict[str, Any] = {}
        for item in settings:
            key, sep, raw = item.partition("=")
            if not sep:
                raise InputError(f"expected KEY=VALUE, got {item!r}")
            try:
                values[key] = int(raw)
            except ValueError:
                try:
                    values[key] = float(raw)
                except ValueError:
                    values[key] = raw
        with _vault(home) as v:
            return v.index_tune(collection, **values)

    _print_json(_run(as_json, action))


# ---- evaluation --------------------------------------------------------------------------------------
@eval_app.command("lfw")
def eval_lfw(
    pairs: Annotated[Path, typer.Option("--pairs", help="LFW pairs.txt (View 2).")],
    images: Annotated[Path, typer.Option("--images", help="LFW image folder (one folder per person).")],
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a ROC curve PNG here.")] = None,
    tta: Annotated[str | None, typer.Option("--tta", help="none, flip (default) or flip+views.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LFW View-2 verification: mean accuracy ± std over the folds, TAR at FAR=1e-3."""
    from .config import load_settings
    from .eval.lfw import run_lfw

    def action() -> dict[str, Any]:
        settings = load_settings(tta=tta)
        return run_lfw(
            pairs,
            images,
            model_id=model or settings.default_model,
            settings=settings,
            workers=workers,
            plot=plot,
            progress=sys.stderr.isatty(),
        )

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
    else:
        typer.echo(
            f"accuracy {res['accuracy']:.4f} ± {res['accuracy_std']:.4f} over {len(res['fold_accuracies'])} "
            f"folds; TAR {res['tar_at_far_1e-3']:.4f} at FAR=1e-3; no face detected in "
            f"{res['no_face_detected']} of {res['images']} images ({res['no_face_handling']}); "
            f"{res['seconds']} s"
        )


@eval_app.command("identify")
def eval_identify(
    images: Annotated[Path, typer.Option("--images", help="Folder with one sub-folder per identity.")],
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-set 1:N on an identity-per-folder dataset: rank-1, FNIR at FPIR=0.01, FPIR at the default
    threshold."""
    from .config import load_settings
    from .eval.identify import run_identify

    def action() -> dict[str, Any]:
        settings = load_settings()
        return run_identify(
            images,
            model_id=model or settings.default_model,
            settings=settings,
            workers=workers,
            progress=sys.stderr.isatty(),
        )

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
    else:
        typer.echo(json.dumps(res, indent=2))


def _wire_subcommands() -> None:
    """Commands that live in their own modules (kept light: they import heavy code lazily)."""
    from .cli_batch import enroll_batch
    from .cli_models import models_app
    from .cli_server import keys_app, serve

    keys_app.command("rotate")(keys_rotate)
    app.add_typer(keys_app, name="keys")
    app.add_typer(models_app, name="models")
    app.command()(serve)
    app.command("enroll-batch")(enroll_batch)


_wire_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
