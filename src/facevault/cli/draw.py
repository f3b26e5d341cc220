"""``facevault search --draw OUT.jpg``: the probe with names on its faces, written next to the result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer


def check(draw: str | None, probes: list[str], manifest: str | None) -> None:
    if draw is not None and (manifest is not None or len(probes) != 1):
        raise typer.BadParameter("--draw takes one PROBE (it writes one annotated photo)")


def drawn(vault: Any, result: Any, probe: str, out: str | None) -> Any:
    """Write the annotated probe to ``out`` (when given) and say so on stderr; returns ``result``."""
    if out is not None:
        from ..service import annotate

        Path(out).write_bytes(vault.annotate_search(probe, result))
        print(f"wrote {out}: {annotate.summary(result)}", file=sys.stderr)
    return result
