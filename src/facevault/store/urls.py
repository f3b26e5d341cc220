"""Store URLs: which database a vault home uses (``resolve_url``, remembered in <home>/store.url), how
a URL is normalised (psycopg 3 for PostgreSQL) and how it is shown without its password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from ..errors import ConfigError

REMEMBERED_URL_FILE = "store.url"


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the ``postgres`` extra), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL without its password: what is shown, logged and remembered."""
    return make_url(url).render_as_string(hide_password=True).replace(":***@", "@")


def _same_database(a: str, b: str) -> bool:
    ua, ub = make_url(normalize_url(a)), make_url(normalize_url(b))
    return ua.set(password=None) == ub.set(password=None)


def resolve_url(settings: Any, *, create: bool = False) -> str:
    """The store URL of a vault home. The database is chosen at ``init`` (``--db`` / ``FACEVAULT_DB``;
    default SQLite at <home>/facevault.db) and remembered, without its password, in
    <home>/store.url; later commands open that database, and naming a different one is an error."""
    home: Path = settings.home
    pointer = home / REMEMBERED_URL_FILE
    wanted: str = (settings.db or "").strip()
    remembered = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    if remembered:
        if wanted and not _same_database(wanted, remembered):
            raise ConfigError(f"this vault's store is {remembered}, not {redact_url(wanted)} (see {pointer})")
        return normalize_url(wanted or remembered)
    default = f"sqlite:///{settings.db_path}"
    if not wanted or _same_database(wanted, default):
        return default
    if settings.db_path.exists():
        raise ConfigError(f"this vault's store is SQLite at {settings.db_path}, not {redact_url(wanted)}")
    if create:
        home.mkdir(parents=True, exist_ok=True)
        pointer.write_text(redact_url(normalize_url(wanted)) + "\n", encoding="utf-8")
        pointer.chmod(0o600)
    return normalize_url(wanted)
