"""Settings of the HTTP server only (the vault's own settings live in ``facevault.config``).

Read from ``FACEVAULT_API_*`` environment variables, overridable by keyword arguments."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class ApiSettings:
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
    # Keep a copy of photos enrolled over HTTP under <home>/photos so the UI can show thumbnails of
    # matched samples; erasing a subject through the API removes the copies.
    keep_photos: bool = True
    # The retention sweep (destroy what is due: expired or withdrawn consent, retention period over) runs
    # when the server starts, before it answers any request, and then every this many seconds (0: never
    # again after the start).
    retention_sweep_interval_s: float = 86400.0

    def with_overrides(self, **overrides: Any) -> ApiSettings:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ApiSettings):
        raw = os.environ.get(f"FACEVAULT_API_{f.name.upper()}")
        if raw is None:
            continue
        default = getattr(ApiSettings(), f.name)
        try:
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            else:
                values[f.name] = type(default)(raw)
        except ValueError as exc:
            raise ConfigError(f"FACEVAULT_API_{f.name.upper()}: cannot use {raw!r}") from exc
    return ApiSettings(**values).with_overrides(**overrides)
