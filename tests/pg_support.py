"""A real PostgreSQL server for the store tests: FACEVAULT_TEST_PG names it (default: the loopback
server that .ci/start-postgres.sh starts). Each test gets a database of its own, dropped afterwards.

When the server cannot be reached the PostgreSQL cases skip, except under CI=true, where they fail:
CI must never pass by skipping the second database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache

import pytest

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("FACEVAULT_TEST_PG") or DEFAULT_SERVER


@cache
def _unreachable_reason() -> str | None:
    try:
        import psycopg
    except ImportError as exc:  # the `postgres` extra is not installed
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(server_url(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {server_url()} is unreachable: {str(exc).strip()}"
    return None


def require_server() -> None:
    reason = _unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: run .ci/start-postgres.sh and set FACEVAULT_TEST_PG)")
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def fresh_database() -> Iterator[str]:
    """Create an empty database on the test server, yield its URL, drop it (even if still in use)."""
    import psycopg

    require_server()
    name = f"facevault_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url(), name)
    finally:
        with psycopg.connect(server_url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_database()
