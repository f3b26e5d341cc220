"""The ``facevault`` app: the global options, ``init`` and ``doctor``, and every command group wired
in the order ``--help`` lists them. The commands live in one module per group; each parses its options,
calls the service and prints the result (``output.emit``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from . import audit, batch, collections, enroll_search, eval, index, models, privacy, server, subjects
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
            return {
                "home": str(v.settings.home.resolve()),
                "database": v.store.display_url,
                "index_dir": str(v.settings.index_dir),
                "index": v.index_backend,
            }

    emit(run(as_json, action), as_json, lambda info: f"vault ready at {info['home']}")


def _commands() -> None:
    app.command()(enroll_search.enroll)
    app.command()(enroll_search.search)
    app.command()(enroll_search.verify)
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
        yield f"{c['collection']}: {verdict} ({c['samples']} samples, {c['indexed']} indexed)"
        for p in c["problems"]:
            yield f"  - {p}"
    a = rep.audit
    yield "audit log: ok" if a["ok"] else f"audit log: BROKEN at entry {a['first_bad_seq']}: {a['problem']}"


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


_commands()
_groups()


def main() -> None:
    app()
