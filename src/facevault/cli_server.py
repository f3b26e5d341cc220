"""``facevault keys ...`` and ``facevault serve``: the CLI side of the HTTP server.

Wired into the main app in cli.py with ``app.add_typer(keys_app, name="keys")`` and
``app.command()(serve)``. Heavy imports stay inside the commands so ``--help`` is instant."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .cli_common import print_json as _print_json
from .cli_common import with_vault as _with_vault

keys_app = typer.Typer(help="Create, list and revoke API keys for the HTTP API.", no_args_is_help=True)

HomeOpt = Annotated[
    str | None,
    typer.Option("--home", envvar="FACEVAULT_HOME", help="Vault folder (default ./facevault-data)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option("--role", help="admin, enroller, searcher, reviewer or auditor.")],
    name: Annotated[str, typer.Option("--name", help="Who or what uses this key.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    from .api.keys import create_key

    secret, record = _with_vault(home, as_json, lambda v: create_key(v, role, name))
    if as_json:
        _print_json({**record, "key": secret})
    else:
        typer.echo(secret)
        typer.echo(
            f"created {record['role']} key {record['prefix']} ({record['name']}); store it now", err=True
        )


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (prefix, name, role, state); never the keys themselves."""
    from .api.keys import list_keys

    rows = _with_vault(home, as_json, list_keys)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        state = "active" if r["active"] else f"revoked {r['revoked_at']}"
        typer.echo(
            f"{r['prefix']}  {r['role']:<9} {r['name']}  ({state}; last used {r['last_used_at'] or 'never'})"
        )


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as listed) or the whole key.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key at once."""
    from .api.keys import revoke_key

    row = _with_vault(home, as_json, lambda v: revoke_key(v, prefix))
    if as_json:
        _print_json(row)
    else:
        typer.echo(f"revoked key {row['prefix']} ({row['name']})")


DEMO_KEY_NAME = "demo"


def demo_admin_key(vault: Any) -> str:
    """A working admin key named "demo" for the demo server. A key's secret is shown only once, so an
    earlier active "demo" admin key is revoked and a fresh one made (both changes are audited)."""
    from .api.keys import create_key, list_keys, revoke_key

    for k in list_keys(vault):
        if k["active"] and k["name"] == DEMO_KEY_NAME and k["role"] == "admin":
            revoke_key(vault, k["prefix"])
    return create_key(vault, "admin", DEMO_KEY_NAME)[0]


def _load_demo(home: str | None) -> str:
    """Run the demo (``python -m facevault.demo``: the demo collection with one consented, enrolled
    subject, a search under case DEMO-1) into the vault at ``home``; returns a fresh admin key."""
    import os

    from . import demo
    from .service import open_vault

    if home:
        os.environ["FACEVAULT_HOME"] = home
    demo.main()
    with open_vault(home) as vault:
        return demo_admin_key(vault)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    home: HomeOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="First load the demo gallery (as `python -m facevault.demo`) and print an admin key "
            "named demo to sign in with.",
        ),
    ] = False,
) -> None:
    """Serve the JSON API (/api/v1, docs at /docs) and the web UI from one process. Creates the vault
    if it does not exist yet; create a key first with `facevault keys create --role admin --name ...`
    (or start with --demo). A retention sweep runs on start and then daily."""
    import uvicorn

    from .api import create_app
    from .errors import FaceVaultError

    try:
        if demo:
            key = _load_demo(home)
            typer.echo(f"\nDemo admin key (shown once; sign in with it at http://{host}:{port}/):\n{key}")
        app = create_app(home=home, create=True)
    except FaceVaultError as exc:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"facevault serving http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=5,
        server_header=False,
        proxy_headers=False,
    )
