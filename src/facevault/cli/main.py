"""The ``facevault`` app: the global options, ``init`` and ``doctor``, and every command group wired
in the order ``--help`` lists them. The commands live in one module per group; each parses its options,
calls the service and prints the result (``output.emit``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from . import (
    audit,
    batch,
    collections,
    detect,
    enroll_search,
    eval,
    index,
    models,
    privacy,
    server,
    subjects,
)
from .output import HomeOpt, JsonOpt, emit, run, state, with_vault
from .output import open_vault as _vault

app = typer.Typer(
    name="facevault",
    help="Self-hosted face search with consent, erasure and an audit trail built in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="FACEVAULT_DB", help="Store URL, e.g. postgresql://... (default: SQLite in the home)."
    ),
]


@app.callback()
def _main(home: HomeOpt = None, db: DbOpt = None) -> None:
    state["home"] = home
    state["db"] = db


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
        with _vault(home, create=True, index=index) as v:
            vault_dir = v.settings.home.resolve()
            keys = v.keys.location()
            head = v.settings.audit_head_path.resolve()
            inside = [
                str(p)
                for p in ([] if v.keys.from_env else [v.settings.key_path.resolve()]) + [head]
                if p.is_relative_to(vault_dir)
            ]
            return {
                "home": str(vault_dir),
                "database": v.store.display_url,
                "index_dir": str(v.settings.index_dir),
                "index": v.index_backend,
                "key_file": keys,
                "audit_head_file": str(head),
                "inside_vault_folder": inside,
            }

    emit(run(as_json, action), as_json, _init_text)


def _init_text(info: dict[str, Any]) -> Iterator[str]:
    yield f"vault ready at {info['home']}"
    yield f"keys: {info['key_file']}"
    yield f"audit head (outside the database): {info['audit_head_file']}"
    if info["inside_vault_folder"]:
        yield (
            "note: " + " and ".join(info["inside_vault_folder"]) + " lie inside the vault folder, so whoever "
            "can change the database there can reach them too; in production set FACEVAULT_KEY_FILE and "
            "FACEVAULT_AUDIT_HEAD_FILE to paths outside it (docs/PRIVACY.md)"
        )


def _commands() -> None:
    app.command()(enroll_search.enroll)
    app.command()(enroll_search.search)
    app.command()(enroll_search.verify)
    app.command()(detect.detect)
    app.command()(doctor)
    app.command()(privacy.optout)
    app.command()(privacy.review)
    app.command()(server.serve)
    app.command("enroll-batch")(batch.enroll_batch)


def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild bad indexes from the store.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that the store and the indexes agree and that the audit chain is intact."""

    rep = with_vault(home, as_json, lambda v: v.doctor(repair=repair))
    emit(rep, as_json, _health)
    if not rep.ok:
        raise typer.Exit(8)


def _health(rep: Any) -> Iterator[str]:
    for c in rep.collections:
        verdict = "ok" if not c["problems"] else ("repaired" if c["repaired"] else "PROBLEM")
        found_by = f", faces found by {c['detector']}" if c.get("detector") else ""
        yield f"{c['collection']}: {verdict} ({c['samples']} samples, {c['indexed']} indexed{found_by})"
        for p in c["problems"]:
            yield f"  - {p}"
    a = rep.audit
    if a["ok"]:
        yield "audit log: ok"
        return
    where = f"entry {a['first_bad_seq']}" if a["first_bad_seq"] is not None else "its head"
    yield f"audit log: BROKEN at {where}: {a['problem']}"
    for p in a.get("problems", [])[1:]:
        yield f"  - {p['message']}"


def _groups() -> None:
    groups = [
        (index.index_app, "index"),
        (privacy.consent_app, "consent"),
        (privacy.retention_app, "retention"),
        (privacy.report_app, "report"),
        (collections.collection_app, "collection"),
        (subjects.subject_app, "subject"),
        (audit.audit_app, "audit"),
        (eval.eval_app, "eval"),
        (server.keys_app, "keys"),
        (models.models_app, "models"),
    ]
    for sub_app, name in groups:
        app.add_typer(sub_app, name=name)
    from .library import library_app

    app.add_typer(library_app, name="library")


_commands()
_groups()


def main() -> None:
    app()
