"""``facevault enroll-batch``: the CLI side of facevault.service.batch.

Wired into the main app in main.py. Heavy imports stay inside the command so ``--help`` is instant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import HomeOpt, emit, open_vault, run


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
    from ..service.batch import enroll_batch as run_batch

    progress, on_progress = _progress_bar(quiet=as_json)

    def action() -> Any:
        with progress, open_vault(home, db=db) as vault:
            return run_batch(
                vault,
                manifest,
                report=report,
                workers=workers,
                ray_address=ray,
                largest=largest,
                retry_failed=retry_failed,
                on_progress=on_progress,
            )

    emit(run(as_json, action), as_json, _summary)


def _summary(summary: Any) -> Iterator[str]:
    yield (
        f"{summary.rows} rows: {summary.already_done} done before, {summary.processed} now "
        f"({summary.enrolled} enrolled, {summary.rejected} rejected, {summary.errors} errors) "
        f"in {summary.seconds:.1f} s"
    )
    if summary.report:
        yield f"report: {summary.report}"


def _progress_bar(quiet: bool) -> tuple[Any, Any]:
    """A rich progress bar on stderr (off with ``quiet`` or without a terminal) and its callback."""
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
        disable=quiet or not console.is_terminal,
    )
    task_id = progress.add_task("rows", total=None)
    first: list[int] = []

    def on_progress(done: int, total: int) -> None:
        if not first:  # rows finished in earlier runs do not count towards the rate
            first.append(done)
            progress.update(task_id, total=total, completed=done)
            progress.reset(task_id, total=total, completed=done)
        progress.update(task_id, total=total, completed=done)

    return progress, on_progress
