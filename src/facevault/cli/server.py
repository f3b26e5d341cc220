"""``facevault keys ...`` and ``facevault serve``: the CLI side of the HTTP server.

Wired into the main app in main.py. Heavy imports stay inside the commands so ``--help`` is instant."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import ROLES
from .output import HomeOpt, emit, fail, with_vault
from .output import JsonOpt as StableJsonOpt

keys_app = typer.Typer(help="Create, list and revoke API keys for the HTTP API.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses this key.")],
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help=f"{', '.join(ROLES[:-1])} or {ROLES[-1]}. With --compat: the roles the key acts in, "
            "comma-separated (admin, enroller, searcher; default: enroller,searcher for recognition, "
            "searcher otherwise; admin may also wipe the collection).",
        ),
    ] = None,
    compat: Annotated[
        str | None,
        typer.Option("--compat", help="A key for another server's protocol: compreface (docs/API.md)."),
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="With --compat: recognition, detection or verification.")
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option("--collection", help="With --compat: the one collection the key works on."),
    ] = None,
    purpose: Annotated[
        str | None,
        typer.Option(
            "--purpose", help="With --compat: why its searches run (every one is audited under it)."
        ),
    ] = None,
    case: Annotated[
        str | None, typer.Option("--case", help="With --compat: the case id its searches belong to.")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    from ..errors import InputError

    if compat is None:
        if role is None or any(v is not None for v in (service, collection, purpose, case)):
            raise fail(
                InputError("give --role (and --service, --collection, --purpose, --case only with --compat)"),
                as_json,
            )
        secret, record = with_vault(home, as_json, lambda v: v.create_api_key(role, name))
    else:
        binding = {
            "name": name,
            "protocol": compat,
            "service": service or "recognition",
            "collection": collection,
            "purpose": purpose or "",
            "case_id": case,
            "roles": role,
        }
        secret, record = with_vault(home, as_json, lambda v: v.create_compat_key(**binding))
    emit({**record, "key": secret}, as_json, lambda _: _show_secret(secret, record))


def _show_secret(secret: str, record: Any) -> None:
    typer.echo(secret)
    compat = record.get("compat")
    what = f"{compat['protocol']} {compat['service']} key" if compat else f"{record['role']} key"
    typer.echo(f"created {what} {record['prefix']} ({record['name']}); store it now", err=True)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (prefix, name, role, state); never the keys themselves."""
    emit(with_vault(home, as_json, lambda v: v.list_api_keys()), as_json, lambda rows: map(_key_line, rows))


def _key_line(r: Any) -> str:
    state = "active" if r["active"] else f"revoked {r['revoked_at']}"
    return f"{r['prefix']}  {r['role']:<9} {r['name']}  ({state}; last used {r['last_used_at'] or 'never'})"


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as listed) or the whole key.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key at once."""
    emit(
        with_vault(home, as_json, lambda v: v.revoke_api_key(prefix)),
        as_json,
        lambda row: f"revoked key {row['prefix']} ({row['name']})",
    )


@keys_app.command("rotate")
def keys_rotate(home: HomeOpt = None, as_json: StableJsonOpt = False) -> None:
    """Re-protect every stored template under a new key; the old key is destroyed, so templates stolen
    before the rotation no longer match anything."""
    emit(
        with_vault(home, as_json, lambda v: v.rotate_keys()),
        as_json,
        lambda res: (
            f"template key rotated v{res['from_version']} -> v{res['to_version']}: "
            f"{res['samples']} templates and {res['optouts']} opt-outs re-protected"
        ),
    )


DEMO_KEY_NAME = "demo"


def demo_admin_key(vault: Any) -> str:
    """A working admin key named "demo" for the demo server. A key's secret is shown only once, so an
    earlier active "demo" admin key is revoked and a fresh one made (both changes are audited)."""
    for k in vault.list_api_keys():
        if k["active"] and k["name"] == DEMO_KEY_NAME and k["role"] == "admin":
            vault.revoke_api_key(k["prefix"])
    return str(vault.create_api_key("admin", DEMO_KEY_NAME)[0])


def _load_demo(home: str | None) -> str:
    """Run the demo (``python -m facevault.demo``: the demo collection with one consented, enrolled
    subject, a search under case DEMO-1) into the vault at ``home``; returns a fresh admin key."""
    import os

    from .. import demo
    from ..service import open_vault

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

    from ..api import create_app
    from ..errors import FaceVaultError

    try:
        if demo:
            key = _load_demo(home)
            typer.echo(f"\nDemo admin key (shown once; sign in with it at http://{host}:{port}/):\n{key}")
        app = create_app(home=home, create=True)
    except FaceVaultError as exc:
        raise fail(exc, False) from None
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
