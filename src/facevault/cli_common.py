"""What every ``facevault`` sub-app shares: the global options' values, JSON printing, and turning a
coded error into its message and exit code. Kept free of heavy imports (``--help`` stays fast)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer

T = TypeVar("T")

# Values of the main app's callback options (``facevault --home X --db URL <command>``).
state: dict[str, Any] = {"home": None, "db": None}


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def fail(exc: Exception, as_json: bool) -> typer.Exit:
    """Report an error (as JSON too with ``--json``) and return the Exit carrying its code."""
    from .errors import FaceVaultError

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
    from .errors import FaceVaultError

    try:
        return action()
    except FaceVaultError as exc:
        raise fail(exc, as_json) from None


def with_vault(home: str | None, as_json: bool, use: Callable[[Any], T]) -> T:
    """Open the vault named by ``home`` or the global options, apply ``use``, close it."""

    def action() -> T:
        from .service import open_vault

        with open_vault(home or state["home"], db=state.get("db")) as vault:
            return use(vault)

    return run(as_json, action)
