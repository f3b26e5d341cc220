"""``models fetch``: download a catalog pack from its publisher (or a mirror), check it, install it.

Nothing is downloaded before the license is accepted and a digest is known for everything that will
be installed: the download's own pinned digest (or one the user gives), or pinned digests of the files
inside a zip (``Download.members``; then only those files are taken out of the zip and installed).

Downloads resume: the partial file waits in ``<models>/.downloads/<file>.part`` until the next attempt,
which asks the server for the rest (see ``download``). A complete file whose digest differs is removed
with its ``.part`` and nothing is installed.

Mirrors (air-gapped sites): ``mirror`` (or ``$FACEVAULT_MODELS_MIRROR``) is a base URL, ``http(s):`` or
``file:``, under which every download is found by its file name (``<mirror>/<Download.filename>``, e.g.
``face_detection_yunet_2023mar.onnx`` or ``buffalo_sc.zip``); the pins are the same.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import zipfile
from pathlib import Path

from ...errors import ConfigError, IntegrityError, NotFoundError
from .catalog import CATALOG, CatalogEntry, Download
from .download import Progress, download
from .install import InstalledPack, install_pack, models_dir
from .manifest import sha256_file

MIRROR_ENV = "FACEVAULT_MODELS_MIRROR"
DOWNLOADS = ".downloads"


def mirror_setting() -> str | None:
    """``$FACEVAULT_MODELS_MIRROR``: base URL of a mirror of the catalog's downloads."""
    raw = os.environ.get(MIRROR_ENV, "").strip()
    return raw or None


def mirror_url(mirror: str, d: Download) -> str:
    return f"{mirror.rstrip('/')}/{d.filename}"


def _plan(entry: CatalogEntry, given: dict[str, str]) -> list[tuple[Download, str | None]]:
    """(download, expected SHA-256 of the whole download or None when its pinned members suffice)."""
    plan = []
    for d in entry.downloads:
        want = d.sha256 or given.get(d.filename) or (given.get("") if len(entry.downloads) == 1 else None)
        if not want and not (d.members and entry.required_files <= set(d.members)):
            raise ConfigError(
                f"no SHA-256 is pinned for {d.filename}; give the digest you trust with "
                f"--sha256 {d.filename}=HEX (downloads are never installed unchecked)",
                code="checksum_required",
            )
        plan.append((d, want.lower() if want else None))
    return plan


def _zip_members(zip_path: Path, pins: dict[str, str], dest: Path | None) -> None:
    """Check the pinned files inside a zip (found by base name); with ``dest``, extract them there."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            by_name: dict[str, list[zipfile.ZipInfo]] = {}
            for info in zf.infolist():
                if not info.is_dir():
                    by_name.setdefault(Path(info.filename).name, []).append(info)
            for name, digest in sorted(pins.items()):
                infos = by_name.get(name, [])
                if len(infos) != 1:
                    raise IntegrityError(
                        f"{zip_path.name}: {'no' if not infos else 'more than one'} {name} inside",
                        code="checksum_mismatch",
                    )
                target = (dest or zip_path.parent) / f".{name}.check"
                with zf.open(infos[0]) as src, open(target, "wb") as out:
                    while block := src.read(1 << 20):
                        out.write(block)
                got = sha256_file(target)
                if got != digest:
                    target.unlink()
                    raise IntegrityError(
                        f"{name} inside {zip_path.name} has SHA-256 {got}, expected {digest}; "
                        "nothing was installed",
                        code="checksum_mismatch",
                    )
                if dest is None:
                    target.unlink()
                else:
                    target.rename(dest / name)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{zip_path.name}: not a zip file ({exc})", code="checksum_mismatch") from exc


def fetch_pack(
    name: str,
    *,
    accept_license: bool = False,
    sha256: dict[str, str] | None = None,
    url: str | None = None,
    root: Path | None = None,
    progress: Progress | None = None,
    mirror: str | None = None,
) -> InstalledPack:
    """Download a catalog pack, check it against its digests, then install it.

    ``sha256`` maps download file names to digests (for downloads whose digest is not pinned; "" for
    the single download of a one-download pack); ``url`` replaces the URL of a single-download entry;
    ``mirror`` (default ``$FACEVAULT_MODELS_MIRROR``) is a base URL holding every download by its file
    name. ``progress(done, total)`` is called as bytes arrive (default: log records, see ``download``).
    An interrupted download raises ``download_failed`` and resumes at the next call."""
    entry = CATALOG.get(name)
    if entry is None:
        raise NotFoundError(f"no pack {name!r} in the catalog (known: {', '.join(sorted(CATALOG))})")
    lic = entry.license
    if not lic.get("commercial_use", False) and not accept_license:
        raise ConfigError(
            f"pack {name!r} is under the license {lic['id']!r} ({lic.get('url', '')}), which does not allow "
            "commercial use. Read it, then fetch again with --accept-license.",
            code="license_not_accepted",
        )
    if url and len(entry.downloads) != 1:
        raise ConfigError(f"pack {name!r} has {len(entry.downloads)} downloads; --url replaces a single one")
    plan = _plan(entry, {k: v.lower() for k, v in (sha256 or {}).items()})
    mirror = mirror or mirror_setting()
    root = root or models_dir()
    partial = root / DOWNLOADS
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
            files = Path(tmp) / "files"
            files.mkdir()
            for d, want in plan:
                src = url or (mirror_url(mirror, d) if mirror else d.url)
                _fetch_one(src, d, want, partial / f"{d.filename}.part", files, progress)
            only = plan[0][0]
            if len(plan) == 1 and plan[0][1] and only.filename.endswith(".zip"):
                source = files / only.filename  # a checked zip: installed as a whole
            else:
                source = files
            return install_pack(source, accept_license=accept_license, name=name, root=root)
    finally:
        if partial.is_dir() and not any(partial.iterdir()):
            partial.rmdir()


def _fetch_one(
    src: str, d: Download, want: str | None, part: Path, files: Path, progress: Progress | None
) -> None:
    """Download ``d`` into ``part`` (resuming), check it, and put it (or its pinned members) in ``files``."""
    try:
        download(src, part, progress)
    except (OSError, http.client.HTTPException) as exc:
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()
        kept = f"; {part.stat().st_size} bytes kept, run fetch again to resume" if part.is_file() else ""
        raise ConfigError(f"cannot download {src}: {exc}{kept}", code="download_failed") from exc
    try:
        if want:
            got = sha256_file(part)
            if got != want:
                raise IntegrityError(
                    f"{d.filename} from {src} has SHA-256 {got}, expected {want}; nothing was installed",
                    code="checksum_mismatch",
                )
        if d.members:
            _zip_members(part, d.members, None if want else files)
    except IntegrityError:
        part.unlink(missing_ok=True)
        raise
    if want:
        part.rename(files / d.filename)
    else:
        part.unlink()
