"""Shared helpers for the API, role and web tests (no tests here): an app around the test vault,
one key per role, an ASGI client, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facevault.api import create_app
from facevault.config import ROLES, ApiSettings

from .conftest import lfw

# Tests make many requests per key: a limit that never bites unless a test asks for one. Libraries may
# take server paths under the temporary folder, where tests put their photos.
TEST_SETTINGS = ApiSettings(
    rate_per_minute=1_000_000, rate_burst=1_000_000, library_roots=tempfile.gettempdir()
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_app(vault):  # type: ignore[no-untyped-def]
    return create_app(vault, settings=TEST_SETTINGS)


@pytest.fixture
def role_keys(api_app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {role: api_app.state.vault.create_api_key(role, f"{role} test key")[0] for role in ROLES}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def asgi_client(app: Any):  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
        yield client


def photo(name: str, number: int) -> tuple[str, bytes, str]:
    p: Path = lfw(name, number)
    return (p.name, p.read_bytes(), "image/jpeg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def setup_gallery(client: httpx.Client, keys: dict[str, str], people: dict[str, list[int]]) -> None:
    """Collection "g" with one subject per person, enrolled over HTTP from the given LFW photos."""
    r = client.post("/api/v1/collections", json={"name": "g"}, headers=auth(keys["admin"]))
    assert r.status_code == 201, r.text
    for person, numbers in people.items():
        r = client.post(
            "/api/v1/collections/g/subjects",
            json={"name": person.replace("_", " "), "purpose": "testing", "consent_text": "signed (test)"},
            headers=auth(keys["enroller"]),
        )
        assert r.status_code == 201, r.text
        r = client.post(
            f"/api/v1/collections/g/subjects/{r.json()['id']}/samples",
            files=[("images", photo(person, n)) for n in numbers],
            headers=auth(keys["enroller"]),
        )
        assert r.status_code == 200 and r.json()["enrolled"] == len(numbers), r.text
