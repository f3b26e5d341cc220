"""Install and verify model packs (``fetch`` downloads them, then installs them here).

Installed packs live in ``models_dir()``: ``$FACEVAULT_MODELS`` if set, else ``$FACEVAULT_HOME/models``
(``./facevault-data/models`` by default), one folder per pack named after it, holding the manifest and
the listed files only. A pack whose license needs acceptance also holds ``LICENSE-ACCEPTED.json`` (the
license id, URL and full text, who accepted it and when); it is written by ``install --accept-license``
and a pack without it is refused at load.

A pack name is a promise about its weights: collections store the name with every vector, so an
installed name is never re-used for a different recognizer file (install refuses; use a new name).
Detector-only packs (no recognizer) live in the same folder and namespace; ``installed_packs`` leaves
them out (they are no model), ``packs.detectors`` lists and loads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ...config import login_name, models_dir_setting
from ...errors import ConfigError, ConflictError, IntegrityError, NotFoundError
from .catalog import CATALOG, CatalogEntry, layout_rank, recognise_layout
from .manifest import MANIFEST_NAME, PackManifest, check_files, load_manifest, parse_manifest, sha256_file

LICENSE_RECORD = "LICENSE-ACCEPTED.json"
MAX_ZIP_BYTES = 4 * 1024**3  # uncompressed; real packs are a few hundred MB


def models_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """``$FACEVAULT_MODELS``, else ``<home>/models`` (``home`` defaults to ``$FACEVAULT_HOME``)."""
    return models_dir_setting(home)


@dataclass(frozen=True)
class InstalledPack:
    name: str
    folder: Path
    manifest: PackManifest

    @property
    def license_record(self) -> dict[str, object] | None:
        p = self.folder / LICENSE_RECORD
        if not p.is_file():
            return None
        return json.loads(p.read_text(encoding="utf-8"))


def installed_packs(root: Path | None = None, *, detector_only: bool = False) -> list[InstalledPack]:
    """The intact-looking packs of ``root`` (manifest readable, named after its folder): the full packs
    (models), or with ``detector_only`` the detector-only ones."""
    root = root or models_dir()
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / MANIFEST_NAME).is_file():
            continue
        try:
            manifest = load_manifest(folder)
        except ConfigError:
            continue  # reported by verify
        if manifest.name == folder.name and manifest.detector_only == detector_only:
            out.append(InstalledPack(manifest.name, folder, manifest))
    return out


def get_installed(name: str, root: Path | None = None) -> InstalledPack:
    root = root or models_dir()
    folder = root / name
    if not (folder / MANIFEST_NAME).is_file():
        raise NotFoundError(f"no model pack {name!r} installed in {root}", code="pack_not_found")
    manifest = load_manifest(folder)
    if manifest.name != name:
        raise IntegrityError(f"{folder}: the manifest names the pack {manifest.name!r}")
    return InstalledPack(name, folder, manifest)


def verify_pack(pack: InstalledPack) -> list[str]:
    """Problems with an installed pack: changed or missing files, a license accepted for another text."""
    problems = check_files(pack.manifest, pack.folder)
    lic = pack.manifest.license
    if lic.needs_acceptance:
        record = pack.license_record
        if record is None:
            problems.append(f"license {lic.id} has not been accepted (install with --accept-license)")
        elif record.get("license_sha256") != _license_digest(pack.manifest):
            problems.append("the accepted license text differs from the manifest's")
    return problems


def verify_installed(root: Path | None = None, skip: Collection[str] = ()) -> dict[str, list[str]]:
    """{pack name: problems} for every folder under the models directory (empty list = intact), but for
    the folders named in ``skip`` (those of built-in packs, which the registry checks)."""
    root = root or models_dir()
    report: dict[str, list[str]] = {}
    if not root.is_dir():
        return report
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in skip:
            continue
        try:
            manifest = load_manifest(folder)
        except ConfigError as exc:
            report[folder.name] = [exc.message]
            continue
        if manifest.name != folder.name:
            report[folder.name] = [f"the manifest names the pack {manifest.name!r}"]
            continue
        report[folder.name] = verify_pack(InstalledPack(folder.name, folder, manifest))
    return report


def _license_digest(manifest: PackManifest) -> str:
    lic = manifest.license
    return hashlib.sha256(f"{lic.id}\n{lic.url}\n{lic.text}".encode()).hexdigest()


def _safe_extract(zip_path: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            total = 0
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep) and target != dest.resolve():
                    raise ConfigError(f"{zip_path}: member {info.filename!r} would land outside the pack")
                total += info.file_size
                if total > MAX_ZIP_BYTES:
                    raise ConfigError(f"{zip_path}: more than {MAX_ZIP_BYTES} bytes uncompressed")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"{zip_path}: not a zip file ({exc})") from exc


def _pack_root(folder: Path) -> Path:
    """The folder holding the pack files: ``folder`` itself or its single sub-folder (zips of
    InsightFace packs sometimes wrap them in one)."""
    if (folder / MANIFEST_NAME).is_file() or any(folder.glob("*.onnx")):
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    if len(subs) == 1:
        return _pack_root(subs[0])
    return folder


def _manifest_for(root: Path, name: str | None) -> PackManifest:
    """The folder's own manifest, or one written from the catalog for a known layout."""
    if (root / MANIFEST_NAME).is_file():
        manifest = load_manifest(root)
        if name and name != manifest.name:
            raise ConfigError(f"the pack calls itself {manifest.name!r}, not {name!r}")
        return manifest
    present = {p.name for p in root.iterdir() if p.is_file()}
    entries: list[CatalogEntry]
    if name:
        entry = CATALOG.get(name)
        entries = [entry] if entry and entry.required_files <= present else []
    else:
        entries = recognise_layout(present)
    if not entries:
        raise ConfigError(
            f"{root}: no {MANIFEST_NAME} and not a known pack layout "
            f"(known: {', '.join(sorted(CATALOG))}); see docs/MODELS.md for the manifest format"
        )
    if len(entries) > 1 and layout_rank(entries[0], present) == layout_rank(entries[1], present):
        raise ConfigError(f"{root}: could be {' or '.join(e.name for e in entries)}; pass the name")
    entry = entries[0]
    files = {f: sha256_file(root / f) for f in sorted(entry.required_files)}
    for f, pin in entry.pinned_files.items():
        if files[f] != pin:
            raise IntegrityError(
                f"{root / f} has SHA-256 {files[f]}, not the {pin} of the published {f} that {entry.name!r} "
                "stands for; give the pack a manifest and another name if it is another network",
                code="checksum_mismatch",
            )
    return parse_manifest(entry.manifest_data(files))


def install_pack(
    source: Path,
    *,
    accept_license: bool = False,
    name: str | None = None,
    root: Path | None = None,
    accepted_by: str | None = None,
) -> InstalledPack:
    """Install a pack from a folder or a zip. The files are checked against the manifest before
    anything is written; the pack appears in ``root`` all at once (rename) or not at all."""
    source = Path(source)
    root = root or models_dir()
    if not source.exists():
        raise NotFoundError(f"{source}: no such file or folder", code="file_not_found")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".install-") as tmp:
        tmp_path = Path(tmp)
        if source.is_dir():
            pack_src = _pack_root(source)
        else:
            _safe_extract(source, tmp_path / "unpacked")
            pack_src = _pack_root(tmp_path / "unpacked")
        manifest = _manifest_for(pack_src, name)
        problems = check_files(manifest, pack_src)
        if problems:
            raise IntegrityError(f"pack {manifest.name!r} from {source}: " + "; ".join(problems))
        lic = manifest.license
        if lic.needs_acceptance and not accept_license:
            raise ConfigError(
                f"pack {manifest.name!r} is under the license {lic.id!r}"
                f"{' (' + lic.url + ')' if lic.url else ''}, which does not allow commercial use. "
                "Read it, then install again with --accept-license.",
                code="license_not_accepted",
            )
        dest = root / manifest.name
        if dest.exists():
            _check_replacement(dest, manifest)
        stage = tmp_path / "stage"
        stage.mkdir()
        for rel in manifest.files:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pack_src / rel, stage / rel)
        manifest.write(stage)
        if lic.needs_acceptance:
            record = {
                "pack": manifest.name,
                "version": manifest.version,
                "license_id": lic.id,
                "license_url": lic.url,
                "license_text": lic.text,
                "license_sha256": _license_digest(manifest),
                "accepted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "accepted_by": accepted_by or login_name(),
            }
            (stage / LICENSE_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if dest.exists():
            old = tmp_path / "old"
            dest.rename(old)
        stage.rename(dest)
    return InstalledPack(manifest.name, dest, manifest)


def _check_replacement(dest: Path, new: PackManifest) -> None:
    try:
        old = load_manifest(dest)
    except ConfigError:
        return  # a broken install may be replaced
    if old.detector_only and new.detector_only:
        return  # no vector was made with a detector: new weights may replace the old
    if old.detector_only or new.detector_only:
        raise ConflictError(
            f"a {'detector-only ' if old.detector_only else ''}pack named {new.name!r} is already installed; "
            "give the new pack another name",
            code="pack_name_taken",
        )
    old_rec = old.files.get(old.recognizer.file)
    new_rec = new.files.get(new.recognizer.file)
    if old_rec != new_rec or old.recognizer.embedding_dim != new.recognizer.embedding_dim:
        raise ConflictError(
            f"a pack named {new.name!r} with different recognizer weights is already installed; "
            "vectors of the two could never be compared, so give the new pack another name",
            code="pack_name_taken",
        )
