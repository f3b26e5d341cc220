"""One settings object. Values come from (lowest to highest priority): defaults, a ``facevault.toml``
in the vault home, ``FACEVAULT_*`` environment variables, and explicit keyword arguments (CLI flags)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_HOME = "facevault-data"
DEFAULT_MODEL = "dlib-resnet-v1"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    default_model: str = DEFAULT_MODEL
    # Image limits: reject decompression bombs before decoding pixels.
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Downscale large photos before detection (the detector upsamples small faces anyway).
    max_detect_side: int = 1600
    # Enrollment quality gates (stricter than search; see docs/ARCHITECTURE.md for how they were chosen).
    enroll_min_eye_distance: float = 24.0
    enroll_min_sharpness: float = 8.0
    enroll_max_yaw: float = 35.0
    enroll_max_roll: float = 30.0
    search_min_eye_distance: float = 10.0
    # Default operating points, as target false-match rates.
    # 1:N default: the per-comparison FMR is chosen so that a probe of someone absent from the gallery
    # is falsely matched with probability about ``search_fpir`` (FPIR ~ gallery samples x FMR), and never
    # looser than ``search_max_fmr``. A fixed ``search_fmr`` > 0 overrides this rule.
    search_fpir: float = 0.01
    search_max_fmr: float = 1e-3
    search_fmr: float = 0.0
    verify_fmr: float = 1e-3
    # The strict operating point of identity-conflict checks and opt-out matching. Opt-out also keeps the
    # expected number of wrongly erased people per opt-out below ``optout_max_false_erasures``.
    conflict_fmr: float = 1e-5
    optout_max_false_erasures: float = 1e-3
    # Test-time augmentation, averaged into one embedding: "none", "flip" (chip + mirror image), or
    # "flip+views" (the model's extra views, e.g. a wider crop, each with its mirror image).
    tta: str = "flip"
    workers: int = 0  # 0 = number of CPUs
    # Vector index backend: "faiss" (embedded, kind by size), "faiss:flat|hnsw|ivfpq", "milvus://PATH.db"
    # (Milvus Lite) or "milvus+http://HOST:19530". Chosen at init and remembered by the vault.
    index: str = ""
    # Template-protection and audit keys live outside the database (see privacy/keys.py).
    key_file: str = ""
    # The store: an SQLAlchemy URL ("postgresql://user@host/dbname", "sqlite:///path.db"). Empty means
    # SQLite at <home>/facevault.db. Chosen at init and remembered by the vault (docs/SCALE.md).
    db: str = ""

    @property
    def db_path(self) -> Path:
        return self.home / "facevault.db"

    @property
    def key_path(self) -> Path:
        return Path(self.key_file).expanduser() if self.key_file else self.home / "keys" / "facevault.key"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    def with_overrides(self, **overrides: Any) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **clean)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    default = getattr(Settings(), name)
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, Path):
            return Path(raw).expanduser()
        return type(default)(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} ({exc})") from exc


def load_settings(home: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings for one vault home."""
    env = os.environ
    home_path = Path(home or env.get("FACEVAULT_HOME") or DEFAULT_HOME).expanduser()
    values: dict[str, Any] = {"home": home_path}
    toml_path = home_path / "facevault.toml"
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {toml_path}: {exc}") from exc
        for key, raw in data.items():
            if key in _FIELDS and key != "home":
                values[key] = _coerce(key, raw)
    for name in _FIELDS:
        if name == "home":
            continue
        raw = env.get(f"FACEVAULT_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw)
    return Settings(**values)
