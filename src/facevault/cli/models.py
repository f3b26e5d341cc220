"""``facevault models``: list, install, verify, inspect and fetch model packs (see docs/MODELS.md).

Wired into the main app with ``app.add_typer(models_app, name="models")``. Like the rest of
``facevault.cli``, nothing heavy is imported at module level: no ONNX Runtime, no model.

Where packs live: ``--models-dir``, else ``$FACEVAULT_MODELS``, else ``<vault home>/models`` (the global
``--home`` or ``$FACEVAULT_HOME``, default ``./facevault-data``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import IntegrityError
from ..service import packs as pack_admin
from .output import print_json as _print_json
from .output import run as _run
from .output import state as _state

models_app = typer.Typer(
    help="Install, verify and inspect model packs (detector + recognizer).", no_args_is_help=True
)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]
DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        envvar="FACEVAULT_MODELS",
        help="Folder of installed packs (default: <vault home>/models).",
        show_default=False,
    ),
]
AcceptOpt = Annotated[
    bool,
    typer.Option(
        "--accept-license",
        help="Accept a non-commercial license (recorded with its text, your user name and the time).",
    ),
]


def _root(models_dir: Path | None) -> Path:
    return pack_admin.models_root(models_dir, _state.get("home"))  # the main app's global --home, when given


@models_app.command("list")
def list_packs(
    models_dir: DirOpt = None,
    catalog: Annotated[bool, typer.Option("--catalog", help="Also list packs `fetch` knows.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Installed packs (and the built-in default model)."""

    def action() -> dict[str, Any]:
        return pack_admin.list_packs(_root(models_dir), catalog=catalog)

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
        return
    typer.echo(f"models folder: {res['models_dir']}")
    rt = res["runtime"]
    typer.echo(
        f"runtime: onnxruntime {rt['onnxruntime']}, provider {rt['provider']} "
        f"(FACEVAULT_PROVIDER={rt['provider_setting']}; available: {', '.join(rt['available_providers'])})"
    )
    typer.echo(f"{'name':<21}{'version':<18}{'detector':<12}{'recognizer':<12}{'dim':>5}  license")
    for b in res["builtin"]:
        note = ""
        if not b["commercial_use"]:
            when = b["license_accepted_at"]
            note = f" (non-commercial, accepted {when})" if when else " (non-commercial, not accepted)"
        typer.echo(
            f"{b['name']:<21}{'built-in':<18}{b['detector']:<12}{b['recognizer']:<12}"
            f"{b['embedding_dim']:>5}  {b['license']}{note}"
        )
    for p in res["installed"]:
        note = "" if p["commercial_use"] else f" (non-commercial, accepted {p['license_accepted_at']})"
        if not p["calibrated"]:
            note += " [no score calibration: collections refused]"
        typer.echo(
            f"{p['name']:<21}{p['version']:<18}{p['detector']:<12}{p['recognizer']:<12}"
            f"{p['embedding_dim']:>5}  {p['license']}{note}"
        )
    if res.get("detectors"):
        typer.echo("detectors (for collection create --detector NAME):")
        for d in res["detectors"]:
            lic = d["license"] + ("" if d["commercial_use"] else " (non-commercial)")
            typer.echo(f"  {d['name']:<16}{d['kind']:<11}{d['source']:<28}{lic}")
    for c in res.get("catalog", []):
        mark = "installed" if c["installed"] else "fetchable"
        typer.echo(f"  {c['name']:<16}{mark:<11}{c['license']:<28}{c['description']}")


@models_app.command("install")
def install(
    path: Annotated[
        Path, typer.Argument(help="A pack folder or zip (with facevault-pack.json, or a known layout).")
    ],
    accept_license: AcceptOpt = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Pack name, for a known layout without a manifest.")
    ] = None,
    models_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a pack's files against its manifest and install it."""

    def action() -> dict[str, Any]:
        return pack_admin.install_pack(path, _root(models_dir), accept_license=accept_license, name=name)

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
    else:
        typer.echo(f"installed {res['name']} {res['version']} in {res['folder']}")
        if not res["calibrated"]:
            typer.echo(
                "note: this pack has no score calibration; collections using it are refused until one is "
                "added (see docs/MODELS.md)"
            )


@models_app.command("accept-license")
def accept_license_cmd(
    name: Annotated[str, typer.Argument(help="A built-in pack whose license needs acceptance.")],
    models_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept the license of a built-in pack (recorded with its text, your user name and the time).
    Installed packs are accepted by `models install --accept-license`."""

    def action() -> dict[str, Any]:
        return pack_admin.accept_license(name, _root(models_dir))

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
    else:
        typer.echo(f"accepted {res['license_id']} for {res['pack']} ({res['license_url']})")


@models_app.command("verify")
def verify(
    name: Annotated[str | None, typer.Argument(help="One pack (default: all installed).")] = None,
    models_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check the SHA-256 of every installed file (and the license acceptance)."""

    def action() -> dict[str, list[str]]:
        return pack_admin.verify_packs(_root(models_dir), name)

    report = _run(as_json, action)
    bad = {k: v for k, v in report.items() if v}
    if as_json:
        _print_json({"packs": {k: {"ok": not v, "problems": v} for k, v in report.items()}})
    else:
        if not report:
            typer.echo("no packs installed")
        for pack, problems in report.items():
            typer.echo(f"{pack}: {'ok' if not problems else 'FAILED'}")
            for p in problems:
                typer.echo(f"  - {p}")
    if bad:
        raise typer.Exit(IntegrityError.exit_code)


@models_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="Installed or built-in pack name.")],
    models_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A pack's manifest, files and license record."""

    def action() -> dict[str, Any]:
        return pack_admin.pack_info(name, _root(models_dir))

    res = _run(as_json, action)
    if as_json:
        _print_json(res)
        return
    typer.echo(f"{res['name']} {res['version']}: {res.get('description', '')}")
    if res["folder"] is None:  # built in
        det, rec, lic = res["detector"], res["recognizer"], res["license"]
        typer.echo(f"  detector    {det['kind']}, {det['landmarks']}-point landmarks ({det['file']})")
        size, dim = rec["input_size"], rec["embedding_dim"]
        typer.echo(f"  recognizer  {rec['kind']} {rec['file']} chip {size} -> {dim}-d")
        typer.echo(f"  license     {lic['id']} {lic['url']}")
        if res["license_record"]:
            typer.echo(f"  accepted    {res['license_record'].get('accepted_at')}")
        typer.echo(f"  calibration {res['calibration']['source']}")
        for f, digest in res["files"].items():
            typer.echo(f"  file        {f}  sha256 {digest}")
        return
    typer.echo(f"  folder      {res['folder']}")
    det, rec = res["detector"], res.get("recognizer")
    typer.echo(f"  detector    {det['kind']} {det['file']} input {det['input_size']} {det['color']}")
    if rec is None:
        typer.echo("  recognizer  none (a detector-only pack: it gives faces to another pack's recognizer)")
    else:
        typer.echo(
            f"  recognizer  {rec['kind']} {rec['file']} input {rec['input_size']} {rec['color']} "
            f"mean {rec['mean']} std {rec['std']} -> {rec['embedding_dim']}-d"
        )
    typer.echo(f"  license     {res['license']['id']} {res['license'].get('url', '')}")
    if res["license_record"]:
        rec_l = res["license_record"]
        typer.echo(f"  accepted    {rec_l.get('accepted_at')} by {rec_l.get('accepted_by')}")
    typer.echo(f"  source      {res.get('source_url') or '-'}")
    for f, digest in res["files"].items():
        typer.echo(f"  file        {f}  sha256 {digest}")


@models_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="A catalog pack (see `models list --catalog`).")],
    accept_license: AcceptOpt = False,
    sha256: Annotated[
        list[str] | None,
        typer.Option(
            "--sha256",
            help="Expected digest: HEX for a single-file pack, or FILE=HEX (repeat) for each download.",
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Download a single-download pack from this URL instead.")
    ] = None,
    models_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a pack, verify its SHA-256 and install it.

    An interrupted download resumes where it stopped when the command is run again. Air-gapped
    sites: set FACEVAULT_MODELS_MIRROR to a base URL (http:, https: or file:) that holds every
    download under its file name; the pinned digests still apply."""

    def action() -> dict[str, Any]:
        digests: dict[str, str] = {}
        for item in sha256 or []:
            key, sep, value = item.rpartition("=")
            digests[key if sep else ""] = value.strip()
        return pack_admin.fetch_pack(
            name, _root(models_dir), accept_license=accept_license, sha256=digests, url=url
        )

    with _progress_on_stderr(enabled=not as_json and sys.stderr.isatty()):
        res = _run(as_json, action)
    if as_json:
        _print_json(res)
    else:
        typer.echo(f"fetched and installed {res['name']} {res['version']} in {res['folder']}")


class _ProgressLine(logging.Handler):
    """Renders the download progress records (logger ``facevault.models.fetch``) as one line."""

    def emit(self, record: logging.LogRecord) -> None:
        done, total = getattr(record, "done", None), getattr(record, "total", None)
        end = "\n" if total is not None and done is not None and done >= total else ""
        sys.stderr.write(f"\r{record.getMessage()}\x1b[K{end}")
        sys.stderr.flush()


@contextlib.contextmanager
def _progress_on_stderr(*, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    log = logging.getLogger("facevault.models.fetch")
    handler, level, propagate = _ProgressLine(), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
