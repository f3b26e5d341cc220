"""``facevault index ...``: inspect, rebuild and tune a collection's vector index."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .output import HomeOpt, JsonOpt, emit, run, with_vault

index_app = typer.Typer(help="Inspect, rebuild and tune a collection's vector index.", no_args_is_help=True)


@index_app.command("info")
def index_info(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Backend, kind, size, memory and search settings of a collection's index."""

    emit(with_vault(home, as_json, lambda v: v.index_info(collection)), as_json)


@index_app.command("rebuild")
def index_rebuild(collection: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Rebuild a collection's index from the store."""

    emit(
        with_vault(home, as_json, lambda v: v.index_rebuild(collection)),
        as_json,
        lambda res: f"rebuilt the index of {collection!r}: {res['indexed']} vectors",
    )


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items as settings: whole numbers, then decimals, else the text as given."""
    from ..errors import InputError

    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"expected KEY=VALUE, got {item!r}")
        values[key] = _number(raw)
    return values


def _number(raw: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


@index_app.command("tune")
def index_tune(
    collection: str,
    settings: Annotated[list[str], typer.Argument(help="KEY=VALUE, e.g. nprobe=256 ef_search=128 kind=hnsw")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change index settings (saved with the index)."""

    values = run(as_json, lambda: parse_settings(settings))
    emit(with_vault(home, as_json, lambda v: v.index_tune(collection, **values)), as_json)
