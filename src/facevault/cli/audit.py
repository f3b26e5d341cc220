"""``facevault audit ...``: read, export and verify the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, with_vault

audit_app = typer.Typer(help="Read and verify the append-only audit log.", no_args_is_help=True)


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="Most recent entries to show.")] = 20,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the most recent audit entries."""

    rows = with_vault(home, as_json, lambda v: v.audit_entries(limit))
    emit(rows, as_json, lambda rows: map(_entry, rows))


def _entry(r: Any) -> str:
    return (
        f"#{r['seq']} {r['at']} {r['action']} by {r['actor']} purpose={r['purpose']!r} "
        f"case={r['case_id']} collection={r['collection']}"
    )


def parse_time(value: str | None) -> datetime | None:
    """An ISO date or time from the command line (UTC unless it names its zone); None if not given."""
    if not value:
        return None
    from ..config import as_utc
    from ..errors import InputError

    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"expiry {value!r} is not a date (use YYYY-MM-DD)") from exc
    return as_utc(when)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date or time (exclusive).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    home: HomeOpt = None,
) -> None:
    """Export audit entries, oldest first (the export itself is audited)."""

    def export(v: Any) -> str:
        return v.audit_export(since=parse_time(since), until=parse_time(until), fmt=fmt)

    typer.echo(with_vault(home, False, export), nl=False)


@audit_app.command("verify")
def audit_verify(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain; exit code 8 names the first broken entry."""

    st = with_vault(home, as_json, lambda v: v.verify_audit())
    emit(
        st,
        as_json,
        lambda st: (
            f"audit chain intact ({st.entries} entries)"
            if st.ok
            else f"audit chain BROKEN at entry {st.first_bad_seq}: {st.problem}"
        ),
    )
    if not st.ok:
        raise typer.Exit(8)
