"""What every ``facevault`` command shares: the global options' values, the common options, printing a
result as JSON or as text, and turning a coded error into its message and exit code.

Kept free of heavy imports (``--help`` stays fast): the service is imported inside the functions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ..service import Vault

T = TypeVar("T")

# Values of the main app's callback options (``facevault --home X --db URL <command>``).
state: dict[str, Any] = {"home": None, "db": None}

HomeOpt = Annotated[
    str | None,
    typer.Option("--home", envvar="FACEVAULT_HOME", help="Vault folder (default ./facevault-data)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON (see docs/CLI.md).")]

# How ``emit`` prints a result without --json: a fixed line, or a function of the result that prints it
# or returns the line(s) to print. None prints the JSON either way.
Text = Callable[[Any], "str | Iterable[str] | None"] | str | None


def jsonable(data: Any) -> Any:
    """``data`` as plain JSON values: typed results by their ``to_dict()``, mappings as dicts and lists
    element by element (anything else that JSON lacks is printed as ``str``)."""
    if callable(getattr(data, "to_dict", None)):
        return jsonable(data.to_dict())
    if isinstance(data, Mapping):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [jsonable(v) for v in data]
    return data


def print_json(data: Any) -> None:
    typer.echo(json.dumps(jsonable(data), indent=2, default=str, ensure_ascii=False))


def emit(result: Any, as_json: bool, text: Text = None) -> None:
    """Print ``result``: as JSON with ``--json`` (or when there is no ``text``), else as ``text``."""
    if as_json or text is None:
        print_json(result)
        return
    lines = text if isinstance(text, str) else text(result)
    if lines is None:
        return
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(line)


def fail(exc: Exception, as_json: bool) -> typer.Exit:
    """Report an error (as JSON too with ``--json``) and return the Exit carrying its code."""
    from ..errors import FaceVaultError

    if isinstance(exc, FaceVaultError):
        error, exit_code = exc.to_dict(), exc.exit_code
    else:
        error, exit_code = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}, 1
    code, message = error["code"], error["message"]
    if as_json:
        print_json({"error": error})
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(exit_code)


def run(as_json: bool, action: Callable[[], T]) -> T:
    """Run ``action``; a FaceVaultError becomes its message and the CLI's coded exit."""
    from ..errors import FaceVaultError

    try:
        return action()
    except FaceVaultError as exc:
        raise fail(exc, as_json) from None


def open_vault(home: str | None, *, db: str | None = None, **options: Any) -> Vault:
    """The vault named by ``home``/``db`` or else by the global options (``create=True``, ``index=...``
    pass through)."""
    from ..service import open_vault as open_

    return open_(home or state["home"], db=db or state.get("db"), **options)


def with_vault(home: str | None, as_json: bool, use: Callable[[Any], T]) -> T:
    """Open the vault named by ``home`` or the global options, apply ``use``, close it."""

    def action() -> T:
        with open_vault(home) as vault:
            return use(vault)

    return run(as_json, action)


def exclusive(as_json: bool, options: Mapping[str, Any]) -> None:
    """Refuse, as bad input (exit 3), more than one of these mutually exclusive options ({flag: value};
    None or False is not given)."""
    if sum(value not in (None, False) for value in options.values()) > 1:
        from ..errors import InputError

        raise fail(InputError(f"give {' or '.join(options)}, not both"), as_json)
