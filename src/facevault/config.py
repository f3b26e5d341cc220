"""One settings object. Values come from (lowest to highest priority): defaults, a ``facevault.toml``
in the vault home, ``FACEVAULT_*`` environment variables, and explicit keyword arguments (CLI flags)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import as_utc, iso, utcnow
from .errors import ConfigError

__all__ = ["as_utc", "iso", "utcnow"]  # re-exported: the edges read UTC handling from here

DEFAULT_HOME = "facevault-data"
DEFAULT_MODEL = "dlib-resnet-v1"

# The roles an API key (and a server request) can have; "admin" implies every other role.
ROLES = ("admin", "enroller", "searcher", "reviewer", "auditor")

# Retention of a collection's faces after a person's last interaction: at most three years (BIPA s. 15(a)
# caps retention at three years after the last interaction).
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 1095
DEFAULT_RETENTION_DAYS = MAX_RETENTION_DAYS

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    default_model: str = DEFAULT_MODEL
    # Image limits: reject decompression bombs before decoding pixels.
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Downscale large photos before detection (the detector upsamples small faces anyway).
    max_detect_side: int = 1600
    # The detector new collections use, and operations without a collection (verify, detect, opt-out):
    # empty = the model pack's own; "dlib-hog", "dlib-mmod" or an installed detector's name
    # (``facevault models list`` shows them). A collection's own choice (``--detector``) wins.
    detector: str = ""
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
    # What a caller below admin may ask of a 1:N search (admin keys and the local operator may go
    # beyond): the loosest threshold, as a false-match rate per comparison, and the most candidates per
    # face. Without these, threshold=-1 with a long list would read out the gallery's names.
    search_loosest_fmr: float = 1e-2
    search_max_top: int = 20
    verify_fmr: float = 1e-3
    # The strict operating point of identity-conflict checks and opt-out matching. Opt-out also keeps the
    # expected number of wrongly erased people per opt-out below ``optout_max_false_erasures``.
    conflict_fmr: float = 1e-5
    optout_max_false_erasures: float = 1e-3
    # Test-time augmentation, averaged into one embedding: "none", "flip" (chip + mirror image), or
    # "flip+views" (the model's extra views, e.g. a wider crop, each with its mirror image).
    tta: str = "flip"
    # Photos larger than ``max_detect_side``: "on" also runs the detector over full-resolution tiles so
    # small faces in large group photos are found (seconds per photo with dlib's MMOD; models/tiling.py).
    detect_tiles: str = "off"
    # Photo libraries of at least this many faces keep their vectors and FAISS index on disk between
    # processes (service/library_snapshot.py), so a CLI command on a 1M-face library does not rebuild them.
    library_snapshot_faces: int = 10_000
    workers: int = 0  # 0 = number of CPUs
    # Vector index backend: "faiss" (embedded, kind by size), "faiss:flat|hnsw|ivfpq", "milvus://PATH.db"
    # (Milvus Lite) or "milvus+http://HOST:19530". Chosen at init and remembered by the vault.
    index: str = ""
    # Template-protection and audit keys live outside the database (see protection.py); in production,
    # outside the vault folder too (docs/PRIVACY.md).
    key_file: str = ""
    # The audit log's head (sequence number + MAC) kept outside the database; empty: next to the key file.
    audit_head_file: str = ""
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
    def audit_head_path(self) -> Path:
        """``audit_head_file``, else ``<key file folder>/<key file stem>.audit-head.json``."""
        if self.audit_head_file:
            return Path(self.audit_head_file).expanduser()
        return self.key_path.parent / f"{self.key_path.stem}.audit-head.json"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def photos_dir(self) -> Path:
        """Copies of photos enrolled over HTTP (review thumbnails): ``<home>/photos``."""
        return self.home / "photos"

    def collection_photos_dir(self, collection_id: int) -> Path:
        """The one definition of the photo layout: ``<home>/photos/c<collection id>/<sha256>``."""
        return self.photos_dir / f"c{collection_id}"

    def photo_path(self, collection_id: int, sha256: str) -> Path:
        return self.collection_photos_dir(collection_id) / sha256

    @property
    def library_photos_root(self) -> Path:
        """Copies of photos uploaded to photo libraries, and their staging area."""
        return self.photos_dir / "libraries"

    def library_photo_path(self, library_id: int, sha256: str) -> Path:
        """The one definition of the library copy layout:
        ``<home>/photos/libraries/l<library id>/<sha256>``."""
        return self.library_photos_root / f"l{library_id}" / sha256

    def with_overrides(self, **overrides: Any) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **clean)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any, defaults: Any = None) -> Any:
    default = getattr(defaults if defaults is not None else Settings(), name)
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in _TRUE
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


def check_retention_days(days: int) -> int:
    """``days`` if it is an allowed retention period; the one place the bounds are checked."""
    from .errors import InputError

    if not MIN_RETENTION_DAYS <= int(days) <= MAX_RETENTION_DAYS:
        raise InputError(
            f"retention must be between {MIN_RETENTION_DAYS} day and 3 years ({MAX_RETENTION_DAYS} days)"
        )
    return int(days)


# ---- the HTTP server's settings (FACEVAULT_API_*) -----------------------------------------------------
@dataclass(frozen=True)
class ApiSettings:
    """Settings of the HTTP server only. Read from ``FACEVAULT_API_*`` variables, overridable by keyword
    arguments (``serve`` flags)."""

    # One uploaded image (multipart part or decoded base64) may not be larger than this.
    max_upload_bytes: int = 10 * 1024 * 1024
    # A whole request body (several photos in one enrollment) may not be larger than this.
    max_request_bytes: int = 64 * 1024 * 1024
    max_files_per_request: int = 50
    # Per-key token bucket: sustained requests per minute, and how many may come at once.
    rate_per_minute: int = 600
    rate_burst: int = 60
    # A request whose vault work takes longer than this gets a 504 (the work itself finishes in the
    # background: a half-written enrollment would be worse than a late one).
    request_timeout_s: float = 120.0
    # Vault work runs in this many worker threads, with at most ``work_queue`` requests waiting for one;
    # beyond that a request is answered 503 with Retry-After ``overload_retry_after_s`` at once (a
    # timed-out request keeps its thread until its work really ends, so it still counts).
    work_threads: int = 8
    work_queue: int = 64
    overload_retry_after_s: float = 1.0
    # Failed authentications (wrong, unknown or revoked keys) per client address (IPv6: per /64): a
    # token bucket; an address that ran out is answered 429 before any store work, each answer held
    # back ``auth_fail_delay_s`` (at most). A key that authenticated in the last 10 minutes is exempt.
    auth_fail_per_minute: int = 30
    auth_fail_burst: int = 10
    auth_fail_delay_s: float = 1.0
    # Keep a copy of photos enrolled over HTTP under <home>/photos so the UI can show thumbnails of
    # matched samples; erasing a subject through the API removes the copies.
    keep_photos: bool = True
    # The retention sweep (destroy what is due: expired or withdrawn consent, retention period over) runs
    # when the server starts, before it answers any request, and then every this many seconds (0: never
    # again after the start).
    retention_sweep_interval_s: float = 86400.0
    # Folders on the server under which photos may be added to a library *by path* over HTTP
    # (``os.pathsep``-separated). Empty: adding by server path over HTTP is refused, photos are uploaded;
    # otherwise an enroller key could index, and then view, any image the server can read. The CLI, run
    # by the operator on their own files, is not limited.
    library_roots: str = ""

    def with_overrides(self, **overrides: Any) -> ApiSettings:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {}
    defaults = ApiSettings()
    for f in dataclasses.fields(ApiSettings):
        raw = os.environ.get(f"FACEVAULT_API_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _coerce(f.name, raw, defaults)
    return ApiSettings(**values).with_overrides(**overrides)


# ---- process-wide switches -----------------------------------------------------------------------------
# These are read where a model, an index client or a fault point is made, often in a worker process
# without a vault's Settings; they are read here, at call time, so that tests and workers can set them.


def _env(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else None


def home_from_env() -> Path:
    """The vault home when none is given: ``$FACEVAULT_HOME`` or ``./facevault-data``."""
    return Path(_env("FACEVAULT_HOME") or DEFAULT_HOME).expanduser()


def provider_setting() -> str:
    """``FACEVAULT_PROVIDER``: auto | cpu | cuda (ONNX Runtime's execution provider)."""
    return (_env("FACEVAULT_PROVIDER") or "auto").strip().lower() or "auto"


def runtime_setting() -> str:
    """``FACEVAULT_RUNTIME``: onnx (default) or dlib, for dlib's ResNet."""
    return (_env("FACEVAULT_RUNTIME") or "onnx").strip().lower()


def threads_setting() -> int:
    """``FACEVAULT_THREADS``: intra-op threads per ONNX session (0: the runtime's choice)."""
    raw = _env("FACEVAULT_THREADS")
    try:
        return int(raw or 0)
    except ValueError as exc:
        raise ConfigError(f"FACEVAULT_THREADS must be a whole number, got {raw!r}") from exc


def landmark_refine_setting() -> bool:
    """``FACEVAULT_LANDMARK_REFINE``: opt-in landmark refinement of the default pack."""
    return (_env("FACEVAULT_LANDMARK_REFINE") or "0").strip().lower() in _TRUE


def eval_portrait_setting() -> bool:
    """``FACEVAULT_EVAL_DETECT=portrait``: the evaluation protocols look at their (portrait) images as
    enrollment does (``Detector.detect_portrait``) instead of as a search does (every face; the default):
    several times faster with the default pack, whose search detector is the CNN."""
    return (_env("FACEVAULT_EVAL_DETECT") or "all").strip().lower() == "portrait"


def prefetch_setting() -> bool:
    """``FACEVAULT_PREFETCH``: a one-off CLI search analyses its probe in a forked child while the vault
    opens (``service.prefetch``); ``0`` turns that off."""
    return (_env("FACEVAULT_PREFETCH") or "1").strip().lower() in _TRUE


def model_cache_setting() -> Path:
    """Where converted models are cached: ``$FACEVAULT_MODEL_CACHE`` or ``~/.cache/facevault/models``."""
    env = _env("FACEVAULT_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facevault" / "models"


def models_dir_setting(home: str | os.PathLike[str] | None = None) -> Path:
    """Installed model packs: ``$FACEVAULT_MODELS``, else ``<home>/models``."""
    env = _env("FACEVAULT_MODELS")
    if env:
        return Path(env).expanduser()
    return (Path(home).expanduser() if home else home_from_env()) / "models"


def milvus_token_setting() -> str | None:
    """``FACEVAULT_MILVUS_TOKEN``: the token for a Milvus server (never for Milvus Lite)."""
    return _env("FACEVAULT_MILVUS_TOKEN")


def keyring_setting() -> str | None:
    """``FACEVAULT_KEYRING``: a whole key ring as JSON, instead of the key file (secrets managers)."""
    return _env("FACEVAULT_KEYRING")


def fault_setting() -> str | None:
    """``FACEVAULT_CRASH_AT``: the named fault point at which this process kills itself (tests only)."""
    return _env("FACEVAULT_CRASH_AT")


def controller_setting() -> str:
    """``FACEVAULT_CONTROLLER``: the data controller named in the records of processing."""
    return _env("FACEVAULT_CONTROLLER") or "set FACEVAULT_CONTROLLER to the controller's name"


def index_policy_env() -> dict[str, str]:
    """``FACEVAULT_INDEX_<FIELD>`` overrides of the index policy, by lower-case field name."""
    prefix = "FACEVAULT_INDEX_"
    return {k[len(prefix) :].lower(): v for k, v in os.environ.items() if k.startswith(prefix)}


def current_user() -> str:
    """The local actor name written to the audit log when none is given."""
    return os.environ.get("USER") or "local"


def login_name() -> str:
    """Who accepted a license on this machine: ``$USER``, else the account's login name."""
    import getpass

    return os.environ.get("USER") or getpass.getuser()
