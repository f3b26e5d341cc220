"""``facevault audit ...``: read, export and verify the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, fail, with_vault

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
def audit_verify(
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="A file from `audit checkpoint`: prove the log still extends it."),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain and its heads; exit code 8 names the first problem."""

    st = with_vault(home, as_json, lambda v: v.verify_audit(checkpoint))
    emit(st, as_json, _status)
    if not st.ok:
        raise typer.Exit(8)


def _status(st: Any) -> list[str]:
    if not st.ok:
        where = f"entry {st.first_bad_seq}" if st.first_bad_seq is not None else "its head"
        lines = [f"audit chain BROKEN at {where}: {st.problem}"]
        lines += [f"  - {p.message}" for p in st.problems[1:]]
        return lines
    notes = [f"{st.entries} entries"]
    ext = st.external_head or {}
    if ext.get("behind"):
        notes.append(f"the head file is {ext['behind']} entries behind and catches up at the next entry")
    if st.acknowledged:
        notes.append(f"{len(st.acknowledged)} acknowledged problems")
    if st.checkpoint:
        notes.append(f"extends the checkpoint #{st.checkpoint['seq']} of {st.checkpoint['at']}")
    return [f"audit chain intact ({'; '.join(notes)})"]


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[
        str | None, typer.Option("--out", help="Also write the checkpoint to this file (mode 0600).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Print a signed checkpoint of the log (sequence number, head MAC, time) as JSON: keep it somewhere
    the vault's operators cannot write, and check it later with `audit verify --checkpoint FILE`."""
    import json
    import os

    cp = with_vault(home, True, lambda v: v.audit_checkpoint()).to_dict()
    text = json.dumps(cp, indent=2)
    if out:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            from ..errors import InputError

            typer.echo(text)  # the checkpoint entry is written: do not lose the checkpoint itself
            raise fail(InputError(f"cannot write {out}: {exc.strerror}"), False) from None
    typer.echo(text)


@audit_app.command("acknowledge")
def audit_acknowledge(
    reason: Annotated[str, typer.Option("--reason", help="Why the break is acknowledged (audited).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge every problem `audit verify` reports now (an admin's audited statement); later
    verification passes over them but fails again at any new one."""

    ack = with_vault(home, as_json, lambda v: v.acknowledge_chain_break(reason))

    def text(a: Any) -> list[str]:
        d = a.to_dict()
        head = f"acknowledged {len(d['acknowledged'])} problems in audit entry #{d['audit_seq']}"
        return [head, *(f"  - {p['message']}" for p in d["acknowledged"])]

    emit(ack, as_json, text)
