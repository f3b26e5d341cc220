"""Model pack administration as use cases: what the CLI's ``models`` commands and the API's model
checks call (the edges never import ``facevault.models`` themselves).

Every function takes the models folder it works on (``models_root``); ``models_root()`` gives the
default one. The answers are plain JSON-able dicts, the same the ``--json`` output prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import models_dir_setting
from ..errors import NotFoundError
from ..models import onnx_runtime, registry
from ..models import packs as installed
from ..models.detectors import available_detectors
from ..models.dlib import builtin as dlib_builtin
from ..models.dlib import license as dlib_license
from ..models.packs.catalog import CATALOG


def available_models() -> list[str]:
    """Ids of every model pack this process can load (built-in and installed)."""
    return registry.available_models()


def check_model(model_id: str) -> None:
    """Load ``model_id``'s pack (raises a FaceVaultError when it cannot be loaded)."""
    registry.get_pack(model_id)


def models_root(models_dir: Path | None = None, home: str | os.PathLike[str] | None = None) -> Path:
    """The models folder: ``models_dir`` when given, else ``$FACEVAULT_MODELS``, else ``<home>/models``
    (``home`` defaults to ``$FACEVAULT_HOME``)."""
    if models_dir is not None:
        return Path(models_dir).expanduser()
    return models_dir_setting(home)


def runtime_info() -> dict[str, Any]:
    """The inference runtime: ONNX Runtime's version, its providers, and the one ``FACEVAULT_PROVIDER``
    chooses (loads ONNX Runtime)."""
    return onnx_runtime.runtime_info()


def _summary(pack: installed.InstalledPack) -> dict[str, Any]:
    m = pack.manifest
    record = pack.license_record
    return {
        "name": m.name,
        "version": m.version,
        "detector": m.detector.kind,
        "recognizer": m.recognizer.kind,
        "embedding_dim": m.recognizer.embedding_dim,
        "license": m.license.id,
        "commercial_use": m.license.commercial_use,
        "license_accepted_at": record.get("accepted_at") if record else None,
        "calibrated": m.calibration is not None or (pack.folder / "calibration.json").is_file(),
        "detector_only": m.detector_only,
        "folder": str(pack.folder),
    }


def list_packs(models_root: Path, *, catalog: bool = False) -> dict[str, Any]:
    """The models folder, the runtime, the built-in and the installed packs (``models list``); with
    ``catalog``, also the packs ``fetch_pack`` knows, each marked installed or not."""
    installed_list = [_summary(p) for p in installed.installed_packs(models_root)]
    detector_only = [_summary(p) for p in installed.installed_packs(models_root, detector_only=True)]
    out: dict[str, Any] = {
        "models_dir": str(models_root),
        "runtime": runtime_info(),
        "builtin": [dlib_builtin.summary(name, models_root) for name in registry.BUILTIN_PACKS],
        "installed": installed_list,
        # every detector a collection can find faces with (``collection create --detector``)
        "detectors": [d.to_dict() for d in available_detectors(models_root)],
    }
    if catalog:
        names = {p["name"] for p in [*installed_list, *detector_only]}
        out["catalog"] = [
            {
                "name": e.name,
                "description": e.description,
                "license": e.license["id"],
                "installed": e.name in names,
                "source_url": e.source_url,
            }
            for e in CATALOG.values()
        ]
    return out


def pack_info(name: str, models_root: Path) -> dict[str, Any]:
    """A pack's manifest, files and license record (``models info``); ``folder`` is None for a built-in
    pack, whose files come with a package."""
    if registry.is_builtin(name):
        return {**dlib_builtin.describe(name, models_root), "folder": None}
    pack = installed.get_installed(name, models_root)
    data = pack.manifest.to_json()
    if "calibration" in data:
        data["calibration"] = {
            k: data["calibration"].get(k) for k in ("impostor_pairs", "source") if k in data["calibration"]
        }
    return {**data, "folder": str(pack.folder), "license_record": pack.license_record}


def install_pack(
    source: Path, models_root: Path, *, accept_license: bool = False, name: str | None = None
) -> dict[str, Any]:
    """Check a pack folder's or zip's files against its manifest and install it; its summary."""
    pack = installed.install_pack(source, accept_license=accept_license, name=name, root=models_root)
    return _summary(pack)


def fetch_pack(
    name: str,
    models_root: Path,
    *,
    accept_license: bool = False,
    sha256: dict[str, str] | None = None,
    url: str | None = None,
    progress: Any = None,
    mirror: str | None = None,
) -> dict[str, Any]:
    """Download a catalog pack, check every download's SHA-256 and install it; its summary. ``sha256``
    maps download file names to digests ("" for the single download of a one-file pack); ``progress``:
    a ``(done, total)`` callback; ``mirror``: a base URL holding each download under its file name."""
    pack = installed.fetch_pack(
        name,
        accept_license=accept_license,
        sha256=sha256,
        url=url,
        root=models_root,
        progress=progress,
        mirror=mirror,
    )
    return _summary(pack)


def verify_packs(models_root: Path, name: str | None = None) -> dict[str, list[str]]:
    """{pack: problems} (empty list = intact) for the installed pack ``name``, or for every folder of
    the models folder (a built-in pack's folder: its license record)."""
    if name:
        return {name: installed.verify_pack(installed.get_installed(name, models_root))}
    return registry.verify_all(models_root)


def accept_license(name: str, models_root: Path) -> dict[str, Any]:
    """Record the acceptance of a built-in pack's license (its text, the user, the time); the record
    without the text, and the folder. Installed packs are accepted when installed."""
    if name != dlib_license.LM68_PACK:
        raise NotFoundError(
            f"{name!r} is not a built-in pack with a license to accept ({dlib_license.LM68_PACK} is)"
        )
    record = dlib_license.accept(models_root)
    return {k: v for k, v in record.items() if k != "license_text"} | {"folder": str(models_root)}
