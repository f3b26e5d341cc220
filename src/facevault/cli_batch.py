"""``facevault enroll-batch``: the CLI side of facevault.batch.

Wired into the main app in cli.py with ``app.command("enroll-batch")(enroll_batch)``. Heavy imports stay
inside the command so ``--help`` is instant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .cli_common import state

HomeOpt = Annotated[
    str | None,
    typer.Option("--home", envvar="FACEVAULT_HOME", help="Vault folder (default ./facevault-data)."),
]


def enroll_batch(
    manifest: Annotated[Path, typer.Argument(help="CSV (with a header) or JSON Lines manifest.")],
    workers: Annotated[
        int,
        typer.Option("--workers", min=0, help="Local processes for decode/detect/embed (0: one per core)."),
    ] = 1,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray", help="Run decode/detect/embed as Ray tasks: 'auto' or the cluster's HOST:PORT."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the per-row result here (.csv, or .jsonl).")
    ] = None,
    largest: Annotated[
        bool, typer.Option("--largest", help="Enroll the largest face of a photo with several.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Redo rows that were rejected or failed in earlier runs.")
    ] = False,
    home: HomeOpt = None,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="FACEVAULT_DB", help="The vault's store URL (see docs/SCALE.md)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Enroll many photos from a manifest: resumable (a re-run skips finished rows), de-duplicated by
    SHA-256, one bad row never stops the batch. Columns: collection, subject and/or external_id, purpose,
    consent_text or consent_file (to create missing subjects), image. See docs/SCALE.md."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from .batch import enroll_batch as run_batch
    from .errors import FaceVaultError
    from .service import open_vault

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- rows/s" if speed is None else f"{speed:.1f} rows/s", style="progress.data.speed")

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("enroll-batch"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=as_json or not console.is_terminal,
    )
    task_id = progress.add_task("rows", total=None)
    first: list[int] = []

    def on_progress(done: int, total: int) -> None:
        if not first:  # rows finished in earlier runs do not count towards the rate
            first.append(done)
            progress.update(task_id, total=total, completed=done)
            progress.reset(task_id, total=total, completed=done)
        progress.update(task_id, total=total, completed=done)

    try:
        with progress, open_vault(home or state["home"], db=db or state.get("db")) as vault:
            summary = run_batch(
                vault,
                manifest,
                report=report,
                workers=workers,
                ray_address=ray,
                largest=largest,
                retry_failed=retry_failed,
                on_progress=on_progress,
            )
    except FaceVaultError as exc:
        if as_json:
            typer.echo(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    data = summary.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(
        f"{summary.rows} rows: {summary.already_done} done before, {summary.processed} now "
        f"({summary.enrolled} enrolled, {summary.rejected} rejected, {summary.errors} errors) "
        f"in {summary.seconds:.1f} s"
    )
    if summary.report:
        typer.echo(f"report: {summary.report}")


if __name__ == "__main__":  # `python -m facevault.cli_batch MANIFEST ...`, the same command unwired
    typer.run(enroll_batch)
