"""``facevault collection ...``: create, list, change, migrate and delete collections."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from ..config import DEFAULT_RETENTION_DAYS
from .output import HomeOpt, JsonOpt, emit, fail, run, with_vault
from .output import open_vault as _vault

collection_app = typer.Typer(
    help="Create, list, change, migrate and delete collections.", no_args_is_help=True
)


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
    ] = DEFAULT_RETENTION_DAYS,
    keep_crops: Annotated[
        bool,
        typer.Option(
            "--keep-crops",
            help="Keep an encrypted face crop of every enrolled sample, so the collection can later be "
            "migrated to another model pack (off by default; see docs/PRIVACY.md).",
        ),
    ] = False,
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector",
            help="Find faces with this detector instead of the model's own (dlib-hog, dlib-mmod or an "
            "installed one: see `facevault models list`); the vectors stay the model's.",
        ),
    ] = None,
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
                detector=detector,
            )
            return {
                "name": row["name"],
                "model_id": row["model_id"],
                "dim": row["dim"],
                "keep_crops": bool(row["keep_crops"]),
                "detector": row["detector"],
            }

    emit(run(as_json, action), as_json, _created)


def _created(row: dict[str, Any]) -> str:
    crops = ", keeping face crops" if row["keep_crops"] else ""
    found = f", faces found by {row['detector']}" if row.get("detector") else ""
    return f"collection {row['name']!r} created (model {row['model_id']}, {row['dim']}-d{crops}{found})"


@collection_app.command("list")
def collection_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their model and counts."""

    def listing(v: Any) -> list[dict[str, Any]]:
        keys = ("name", "model_id", "detector", "subjects", "samples")
        return [
            {**{k: c[k] for k in keys}, "keep_crops": bool(c["keep_crops"])} for c in v.list_collections()
        ]

    emit(with_vault(home, as_json, listing), as_json, _table)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("collection", "model", "detector", "subjects", "samples", "crops")
    for r in rows:
        crops = "kept" if r["keep_crops"] else "-"
        det = r["detector"] or "(model's own)"
        table.add_row(r["name"], r["model_id"], det, str(r["subjects"]), str(r["samples"]), crops)
    Console().print(table)


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
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector",
            help="Find faces with this detector from now on ('own': the model's own); stored vectors "
            "stay valid.",
        ),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a collection's settings."""
    if keep_crops is None and detector is None:
        from ..errors import ConfigError

        raise fail(ConfigError("nothing to change: give --keep-crops/--no-keep-crops or --detector"), as_json)
    if detector is not None:
        wanted = None if detector == "own" else detector
        changed = with_vault(home, as_json, lambda v: v.set_detector(name, wanted))
        emit(changed, as_json, lambda r: f"collection {name!r} finds faces with {r['detector']}")
    if keep_crops is None:
        return
    res = with_vault(home, as_json, lambda v: v.set_keep_crops(name, keep_crops))

    def text(res: dict[str, Any]) -> str:
        if res["keep_crops"]:
            return f"collection {name!r} keeps face crops of samples enrolled from now on"
        return f"collection {name!r} keeps no face crops; {res['crops_deleted']} deleted"

    emit(res, as_json, text)


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

    emit(with_vault(home, as_json, migrate), as_json, lambda res: _migrated(name, res))


def _migrated(name: str, res: dict[str, Any]) -> Iterator[str]:
    yield (
        f"collection {name!r} moved from {res['from_model']} to {res['to_model']} ({res['dim']}-d): "
        f"{res['samples']} samples re-embedded, {res['indexed']} indexed"
    )
    if res["located_by_fallback"]:
        yield (
            f"{res['located_by_fallback']} faces were not found again by the new detector; their landmarks "
            "were placed in the stored face box"
        )
    if res["optout_models"]:
        yield (
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

    counts = with_vault(home, as_json, lambda v: v.delete_collection(name))
    emit({"deleted": name, **counts}, as_json, f"deleted collection {name!r}: {counts}")
