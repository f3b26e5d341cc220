"""Operating limits (issue 11, findings 12 to 15): inputs that are not regular files, failed
authentication per client address, a bounded work pool that sheds load with 503, the access log that
names no one, private vault files, and upside-down faces."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event

import facevault
from facevault import faults
from facevault.api import create_app
from facevault.models.base import DetectedFace
from facevault.quality import estimate_pose

from . import test_api_support as support
from .conftest import lfw, write_image
from .test_api_support import TEST_SETTINGS, asgi_client, auth, live_server, photo

anyio_backend = support.anyio_backend

MEMORY_CAP = 4 * 1024**3  # a CLI child that reads /dev/zero stops here instead of filling the machine


# ---- 12: only regular files, at most the byte limit ---------------------------------------------------
# The child caps its own address space before the CLI starts. A ``preexec_fn`` would do it between fork
# and exec, which forces a plain fork of the test process and runs the fork handlers of libraries its other
# threads are in (gRPC, loaded by the Milvus Lite tests, aborted such a child with SIGABRT).
_CAPPED_CLI = (
    "import resource, runpy, sys; "
    "cap = int(sys.argv.pop(1)); resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); "
    "sys.argv[0] = 'facevault'; runpy.run_module('facevault.cli', run_name='__main__', alter_sys=True)"
)


def _cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``facevault ARGS`` in a child with its address space capped and a deadline: a hang fails the
    test (TimeoutExpired) instead of hanging it, and an unbounded read fails it with MemoryError."""
    env = {**os.environ, "FACEVAULT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", _CAPPED_CLI, str(MEMORY_CAP), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "probe.jpg"  # a name that looks like a photo
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_search_refuses_a_pipe_or_a_device_at_once(tmp_path: Path, fifo: Path, kind: str) -> None:
    home = tmp_path / "vault"
    with facevault.open(str(home), create=True) as v:
        v.create_collection("c")
    probe = str(fifo) if kind == "fifo" else "/dev/zero"
    started = time.monotonic()
    res = _cli(home, "search", "c", probe, "--purpose", "limits test", "--json", timeout=60)
    assert res.returncode == 3, res.stderr[-2000:]
    error = json.loads(res.stdout)["error"]
    assert error["code"] == "not_a_file"
    assert ("named pipe" if kind == "fifo" else "character device") in error["message"]
    assert "Traceback" not in res.stderr
    assert time.monotonic() - started < 60


@pytest.mark.data
def test_enroll_batch_reports_pipe_and_device_rows_and_enrolls_the_rest(tmp_path: Path, fifo: Path) -> None:
    home = tmp_path / "vault"
    with facevault.open(str(home), create=True) as v:
        v.create_collection("people", purpose="limits test")
    manifest = tmp_path / "manifest.csv"
    rows = [
        {"subject": "Pipe", "image": str(fifo)},
        {"subject": "Zero", "image": "/dev/zero"},
        {"subject": "Colin Powell", "image": str(lfw("Colin_Powell", 2))},
    ]
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["collection", "subject", "purpose", "consent_text", "image"])
        w.writeheader()
        for r in rows:
            w.writerow(
                {"collection": "people", "purpose": "limits test", "consent_text": "agreed (test)", **r}
            )
    report = tmp_path / "report.csv"
    res = _cli(home, "enroll-batch", str(manifest), "--report", str(report), "--workers", "1", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    with open(report, newline="") as fh:
        got = {int(r["row"]): r for r in csv.DictReader(fh)}
    assert (got[1]["status"], got[1]["reason"]) == ("error", "not_a_file")
    assert "named pipe" in got[1]["message"]
    assert (got[2]["status"], got[2]["reason"]) == ("error", "not_a_file")
    assert "character device" in got[2]["message"]
    assert got[3]["status"] == "enrolled"


# ---- 13: failed authentication is limited per client address -----------------------------------------
def _bad_key(i: int) -> dict[str, str]:
    return {"X-API-Key": f"fvk_{i:08x}_" + "x" * 40}  # well formed: the server must look it up


@pytest.mark.anyio
async def test_failed_authentication_is_limited_per_address_before_any_store_work(vault) -> None:  # type: ignore[no-untyped-def]
    settings = TEST_SETTINGS.with_overrides(auth_fail_per_minute=1, auth_fail_burst=3, auth_fail_delay_s=0)
    app = create_app(vault, settings=settings)
    good = auth(vault.create_api_key("searcher", "real searcher")[0])
    statements: list[str] = []
    event.listen(vault.store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    async with asgi_client(app) as c:
        assert (await c.get("/api/v1/me", headers=good)).status_code == 200
        first = [(await c.get("/api/v1/me", headers=_bad_key(i))).status_code for i in range(3)]
        assert first == [401, 401, 401]
        statements.clear()
        refused = [await c.get("/api/v1/me", headers=_bad_key(100 + i)) for i in range(20)]
        assert {r.status_code for r in refused} == {429}
        assert refused[0].json()["error"]["code"] == "rate_limited"
        assert int(refused[0].headers["retry-after"]) >= 1
        assert statements == []  # refused before any store work
        # A key that authenticated before is not locked out by the failures next to it ...
        assert (await c.get("/api/v1/me", headers=good)).status_code == 200
        # ... and a request without a key costs nothing, so it keeps its plain 401.
        assert (await c.get("/api/v1/me")).status_code == 401
    other = httpx.ASGITransport(app=app, client=("192.0.2.7", 4711))
    async with httpx.AsyncClient(transport=other, base_url="http://testserver") as c:
        assert (await c.get("/api/v1/me", headers=_bad_key(500))).status_code == 401  # its own bucket


# ---- 14: a bounded pool with a bounded queue; 503 when full -------------------------------------------
@pytest.mark.anyio
@pytest.mark.data
async def test_full_pool_sheds_load_with_503_at_once_and_recovers(vault) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("g")
    vault.add_subject("g", "Colin Powell", purpose="testing", consent_text="agreed (test)")
    assert vault.enroll("g", "Colin Powell", [lfw("Colin_Powell", 1)])[0].ok
    settings = TEST_SETTINGS.with_overrides(work_threads=1, work_queue=1, request_timeout_s=1.0)
    app = create_app(vault, settings=settings)
    pool = app.state.work_pool
    key = auth(vault.create_api_key("searcher", "s")[0])
    reached, release = threading.Event(), threading.Event()

    def hold() -> None:  # the search's worker thread waits here, as a slow search would
        reached.set()
        release.wait(60)

    async def timed(
        c: httpx.AsyncClient, method: str, url: str, **kw: object
    ) -> tuple[httpx.Response, float]:
        t0 = time.monotonic()
        r = await c.request(method, url, headers=key, **kw)  # type: ignore[arg-type]
        return r, time.monotonic() - t0

    try:
        with faults.hooked("search:shortlisted", hold, once=True):
            async with asgi_client(app) as c:
                search = asyncio.create_task(
                    c.post(
                        "/api/v1/collections/g/search",
                        data={"purpose": "p"},
                        files={"image": photo("Colin_Powell", 2)},
                        headers=key,
                    )
                )
                assert await anyio.to_thread.run_sync(reached.wait, 60)
                slow = await search
                assert slow.status_code == 504  # its deadline passed; its thread is still held
                # The only thread is still busy: one light request waits in the queue, the next finds
                # the queue full and is answered at once; the waiting one gets a 503 when its
                # deadline passes without a free thread (it never ran).
                (a, ta), (b, tb) = await asyncio.gather(
                    timed(c, "GET", "/api/v1/me"), timed(c, "GET", "/api/v1/me")
                )
                assert a.status_code == b.status_code == 503
                assert {a.json()["error"]["code"], b.json()["error"]["code"]} == {"overloaded"}
                assert int(a.headers["retry-after"]) >= 1 and int(b.headers["retry-after"]) >= 1
                assert min(ta, tb) < 0.5 <= max(ta, tb)
                release.set()
                assert await anyio.to_thread.run_sync(pool.drain, 60)
                ok = await c.get("/api/v1/me", headers=key)
                assert ok.status_code == 200
    finally:
        release.set()
        pool.close()


def test_an_admitted_request_is_never_refused_halfway_and_a_timed_out_one_keeps_its_place() -> None:
    from facevault.api.runner import WorkPool

    pool = WorkPool(1, 1)
    first, second = pool.admit(), pool.admit()
    assert first is not None and second is not None
    assert pool.admit() is None and pool.full()  # a third request is refused at the door
    release = threading.Event()
    running = pool.submit(lambda: release.wait(60), first)
    queued = pool.submit(lambda: "done", second)  # admitted: it waits for the thread, never refused
    first.close()  # answered (say with a 504) while its work still runs: its place stays taken
    second.close()
    assert pool.full()
    release.set()
    assert running.result(60) is True and queued.result(60) == "done"
    assert pool.drain(60) and not pool.full()
    pool.close()


def test_ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() -> None:
    from facevault.api.ratelimit import client_bucket

    assert client_bucket("2001:db8:1:2:aaaa::1") == client_bucket("2001:db8:1:2:ffff::9")
    assert client_bucket("2001:db8:1:2::1") != client_bucket("2001:db8:1:3::1")
    assert client_bucket("::ffff:192.0.2.7") == client_bucket("192.0.2.7") == "192.0.2.7"


# ---- 15: the access log names no one ------------------------------------------------------------------
class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Iterator[_Lines]:
    """A handler for the lines the server's access logger writes; the test adds it once the server
    runs (uvicorn's configuration replaces the logger's handlers)."""
    logger = logging.getLogger("uvicorn.access")
    level = logger.level
    handler = _Lines()
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_access_log_shows_route_templates_never_names_or_external_ids(vault, access_lines: _Lines) -> None:  # type: ignore[no-untyped-def]
    app = create_app(vault, settings=TEST_SETTINGS)
    admin = auth(vault.create_api_key("admin", "a")[0])
    secret_name, secret_ref = "Zoltan Secretname", "EXT-4711-SECRET"
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        logger = logging.getLogger("uvicorn.access")
        logger.addHandler(access_lines)
        logger.setLevel(logging.INFO)  # live_server's configuration logs warnings only
        assert c.post("/api/v1/collections", json={"name": "staff"}, headers=admin).status_code == 201
        made = c.post(
            "/api/v1/collections/staff/subjects",
            json={"name": secret_name, "external_id": secret_ref, "purpose": "testing", "consent_text": "ok"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        c.get(f"/api/v1/collections/staff/subjects/{made.json()['id']}", headers=admin)
        c.get(f"/api/v1/collections/staff/subjects/{secret_ref}", headers=admin)
        c.get("/api/v1/collections/staff/subjects", params={"name": secret_name}, headers=admin)
        c.delete(f"/api/v1/collections/staff/subjects/{secret_ref}", headers=admin)
        c.get(f"/api/v1/no-such-route/{secret_ref}", headers=admin)
    text = "\n".join(access_lines.lines)
    assert "/api/v1/collections/{collection}/subjects" in text
    assert "{unmatched}" in text
    for secret in (secret_ref, secret_name, "Secretname", "Zoltan"):
        assert secret not in text, text
    assert "staff" not in text  # the collection is a path parameter too


# ---- 15: the vault's files are private ----------------------------------------------------------------
def _loose(home: Path) -> list[str]:
    loose = []
    for path in [home, *home.rglob("*")]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            loose.append(f"{path.relative_to(home)} {oct(stat.S_IMODE(st.st_mode))}")
    return loose


@pytest.mark.data
def test_vault_folder_and_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: new files 0644, new folders 0755
    try:
        home = tmp_path / "vault"
        with facevault.open(str(home), create=True) as v:
            v.create_collection("c")
            v.add_subject("c", "Colin Powell", purpose="testing", consent_text="agreed (test)")
            assert v.enroll("c", "Colin Powell", [lfw("Colin_Powell", 1)])[0].ok
        names = {p.name for p in home.rglob("*")}
        assert "facevault.db" in names
        # Folders are private at once, whatever is made in them later.
        assert [p for p in [home, *home.rglob("*")] if p.is_dir() and p.stat().st_mode & 0o077] == []
        # Opening to serve (create=True, as `serve` and `init` do) leaves nothing readable by others.
        with facevault.open(str(home), create=True):
            assert _loose(home) == []
        # A vault made by an older version, readable by everyone (but its key file, which the key ring
        # has always refused to use unless it is 0600), is tightened the same way.
        for path in [home, *home.rglob("*")]:
            if path.suffix != ".key":
                path.chmod(0o755 if path.is_dir() else 0o644)
        with facevault.open(str(home), create=True):
            assert _loose(home) == []
    finally:
        os.umask(old)


# ---- 15: an upside-down face is refused ---------------------------------------------------------------
def _face(left: tuple[float, float], right: tuple[float, float], nose: tuple[float, float]) -> DetectedFace:
    return DetectedFace(
        box=(0.0, 0.0, 100.0, 100.0),
        score=1.0,
        landmarks=np.zeros((5, 2), np.float32),
        left_eye=left,
        right_eye=right,
        nose=nose,
    )


def test_roll_of_a_face_whose_nose_is_above_its_eyes_is_near_180() -> None:
    _, _, upright = estimate_pose(_face((40, 50), (60, 50), (50, 65)))
    _, _, turned = estimate_pose(_face((40, 50), (60, 50), (50, 35)))  # the same face turned over
    assert abs(upright) < 1
    assert abs(turned) > 179


@pytest.mark.data
def test_an_upside_down_face_is_not_enrolled(vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("c")
    vault.add_subject("c", "Colin Powell", purpose="testing", consent_text="agreed (test)")
    pixels = np.asarray(Image.open(lfw("Colin_Powell", 1)).convert("RGB"))
    turned = write_image(tmp_path / "turned.png", np.ascontiguousarray(np.rot90(pixels, 2)), fmt="PNG")
    [out] = vault.enroll("c", "Colin Powell", [turned])
    assert (out.ok, out.reason) == (False, "extreme_pose"), out
    assert vault.enroll("c", "Colin Powell", [lfw("Colin_Powell", 1)])[0].ok  # the same photo, upright
