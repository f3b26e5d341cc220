"""The one owner of which model packs exist: the built-in dlib packs and the packs installed in models
folders, each under its id, and the process-wide cache of loaded packs.

Loading is lazy and cached per process: importing this module loads no model. The lower modules
(``dlib``, ``packs``) know nothing of the registry; it imports them, never the reverse.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import calibration
from ..config import models_dir_setting
from ..errors import FaceVaultError, ModelError
from .base import ModelPack
from .dlib.builtin import BUILTIN_PACKS, DEFAULT_PACK, dlib_resnet_v1, dlib_resnet_v1_lm68, verify_record
from .dlib.license import LM68_PACK, acceptance
from .packs import get_installed, installed_packs, load_pack, pack_calibration, verify_installed

__all__ = [
    "BUILTIN_PACKS",
    "available_models",
    "ensure_registered",
    "get_pack",
    "is_builtin",
    "license_acceptance",
    "register_installed_packs",
    "register_pack",
    "registered_roots",
    "verify_all",
]


def _dlib_resnet_v1_lm68() -> ModelPack:
    """An acceptance in any models folder in use counts: the default one and every one registered."""
    return dlib_resnet_v1_lm68([models_dir_setting(), *registered_roots()])


_factories: dict[str, Callable[[], ModelPack]] = {
    DEFAULT_PACK: dlib_resnet_v1,
    LM68_PACK: _dlib_resnet_v1_lm68,
}
_loaded: dict[str, ModelPack] = {}
_lock = threading.RLock()  # a pack factory may build on another pack

# Models folders whose installed packs have been registered in this process.
_registered_roots: set[Path] = set()
_reg_lock = threading.Lock()


def register_pack(model_id: str, factory: Callable[[], ModelPack]) -> None:
    """Make another model pack available under ``model_id`` (replaces one of the same id)."""
    with _lock:
        _factories[model_id] = factory
        _loaded.pop(model_id, None)


def is_builtin(model_id: str) -> bool:
    """A pack that comes with facevault (its files with a package), not from a models folder."""
    return model_id in BUILTIN_PACKS


# ---- installed packs ---------------------------------------------------------------------------------
def register_installed_packs(models_root: Path) -> list[str]:
    """Register every pack installed in ``models_root`` (and its calibration, if it has one). Cheap:
    reads manifests only. Returns the names registered."""
    root = Path(models_root).expanduser().resolve()
    names = []
    for pack in installed_packs(root):

        def factory(name: str = pack.name, where: Path = root) -> ModelPack:
            return load_pack(name, where)

        register_pack(pack.name, factory)
        cal = pack_calibration(pack)
        if cal is not None:
            calibration.register(cal)  # type: ignore[arg-type]
        names.append(pack.name)
    with _reg_lock:
        _registered_roots.add(root)
    return names


def registered_roots() -> list[Path]:
    """Models folders this process has registered packs from (a vault registers its own)."""
    with _reg_lock:
        return sorted(_registered_roots)


def ensure_registered(models_root: Path) -> None:
    """``register_installed_packs`` once per models folder per process."""
    resolved = Path(models_root).expanduser().resolve()
    with _reg_lock:
        if resolved in _registered_roots:
            return
    register_installed_packs(resolved)


def _scan_packs() -> None:
    """Register the packs of the default models folder (reads their manifests; no network)."""
    ensure_registered(models_dir_setting())


# ---- lookup ------------------------------------------------------------------------------------------
def available_models() -> list[str]:
    """Ids of every pack this process can load: built-in, registered, and installed in the default
    models folder."""
    _scan_packs()
    with _lock:
        return sorted(_factories)


def get_pack(model_id: str) -> ModelPack:
    """The pack ``model_id``, loaded on first use and then cached (a ModelError when unknown)."""
    with _lock:
        pack = _loaded.get(model_id)
        if pack is None:
            factory = _factories.get(model_id)
            if factory is None:
                _scan_packs()
                factory = _factories.get(model_id)
            if factory is None:
                raise ModelError(f"unknown model {model_id!r}; available: {', '.join(sorted(_factories))}")
            pack = factory()
            if pack.model_id != model_id:
                raise ModelError(f"model pack registered as {model_id!r} reports id {pack.model_id!r}")
            _loaded[model_id] = pack
        return pack


# ---- what a models folder says about the packs ---------------------------------------------------------
def license_acceptance(model_id: str, models_root: Path) -> dict[str, Any] | None:
    """For a pack whose license needs acceptance (the 68-point built-in, non-commercial installed packs):
    who accepted which license text and when, for the vault's audit log; None for other packs."""
    if model_id == LM68_PACK:
        record: dict[str, Any] | None = acceptance(models_root)
    elif is_builtin(model_id):
        return None
    else:
        try:
            pack = get_installed(model_id, models_root)
        except FaceVaultError:  # not an installed pack (e.g. registered by code): nothing recorded
            return None
        if not pack.manifest.license.needs_acceptance:
            return None
        record = pack.license_record
    if record is None:
        return None
    text = str(record.get("license_text") or "")
    return {
        "license_id": record.get("license_id"),
        "license_url": record.get("license_url"),
        "license_text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "accepted_at": record.get("accepted_at"),
        "accepted_by": record.get("accepted_by"),
    }


def verify_all(models_root: Path) -> dict[str, list[str]]:
    """{pack name: problems} for every folder of ``models_root`` (empty list = intact). A built-in pack's
    folder holds only a license record (its files come with a package), so only that is checked."""
    report = verify_installed(models_root, skip=BUILTIN_PACKS)
    if models_root.is_dir():
        for name in BUILTIN_PACKS:
            if (models_root / name).is_dir():
                report[name] = verify_record(name, models_root)
    return dict(sorted(report.items()))
