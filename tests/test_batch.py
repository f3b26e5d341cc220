"""``facevault enroll-batch``: a kill -9 mid-run loses and repeats nothing, bad rows never stop the
batch, and Ray tasks (a local Ray head bound to 127.0.0.1, started and stopped by the test) give the
same result as local processes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

import facevault
from facevault.store import schema as t

from .conftest import lfw

BATCH = [sys.executable, "-m", "facevault.cli", "enroll-batch"]
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _manifest(
    tmp_path: Path, n_per_person: int = 20, fmt: str = "csv", extra: list[dict] | None = None
) -> Path:
    rows = []
    for person, ext in (("Tony_Blair", "TB"), ("Colin_Powell", "CP")):
        for i in range(1, n_per_person + 1):
            rows.append(
                {
                    "collection": "people",
                    "subject": person.replace("_", " "),
                    "external_id": ext,
                    "purpose": "batch test",
                    "consent_text": f"{person} agreed (test)",
                    "image": str(lfw(person, i)),
                }
            )
    rows += extra or []
    path = tmp_path / f"manifest.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(
                fh,
                fieldnames=[
                    "collection",
                    "subject",
                    "external_id",
                    "purpose",
                    "consent_text",
                    "consent_file",
                    "image",
                ],
            )
            w.writeheader()
            for r in rows:
                w.writerow(r)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def batch_vault(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "vault"
    with facevault.open(str(home), create=True) as v:
        v.create_collection("people", purpose="batch test")
    return home


def _db(home: Path):  # type: ignore[no-untyped-def]
    return create_engine(f"sqlite:///{home / 'facevault.db'}")


def _rows_done(home: Path) -> int:
    eng = _db(home)
    try:
        with eng.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='batch_rows'")).first():
                return 0
            return int(conn.execute(select(func.count()).select_from(t.batch_rows)).scalar_one())
    except Exception:  # the writer holds the lock at this instant
        return -1
    finally:
        eng.dispose()


def _check_exactly_once(home: Path, manifest_rows: int) -> None:
    eng = _db(home)
    with eng.connect() as conn:
        per_row = conn.execute(
            select(t.batch_rows.c.row_number, func.count()).group_by(t.batch_rows.c.row_number)
        ).all()
        assert len(per_row) == manifest_rows and all(c == 1 for _, c in per_row)
        enrolled = conn.execute(
            select(func.count()).select_from(t.batch_rows).where(t.batch_rows.c.status == "enrolled")
        ).scalar_one()
        samples = conn.execute(select(func.count()).select_from(t.samples)).scalar_one()
        assert samples == enrolled
        dup_images = conn.execute(
            select(t.images.c.sha256)
            .group_by(t.images.c.collection_id, t.images.c.sha256)
            .having(func.count() > 1)
        ).all()
        assert dup_images == []
        sample_ids = [
            r[0]
            for r in conn.execute(
                select(t.batch_rows.c.sample_id).where(t.batch_rows.c.sample_id.isnot(None))
            )
        ]
        assert len(sample_ids) == len(set(sample_ids)) == samples
        assert conn.execute(select(func.count()).select_from(t.subjects)).scalar_one() == 2
    eng.dispose()
    with facevault.open(str(home)) as v:
        report = v.doctor()  # the index holds exactly the store's samples; the audit chain is intact
        assert report.ok, report
        assert v.verify_audit().ok


@pytest.mark.data
@pytest.mark.slow
def test_kill_9_mid_run_loses_and_repeats_nothing(batch_vault: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 20)
    env = {**os.environ, "FACEVAULT_HOME": str(batch_vault)}
    cmd = [*BATCH, str(manifest), "--workers", "2"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 240
    try:
        while _rows_done(batch_vault) < 6:  # some rows committed, most not yet
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no rows were committed in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the writer and its worker processes, all at once
        proc.wait()
    killed_at = _rows_done(batch_vault)
    assert 6 <= killed_at < 40, killed_at

    report = tmp_path / "report.jsonl"
    done = subprocess.run([*cmd, "--report", str(report), "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 40 and summary["already_done"] >= killed_at
    assert summary["already_done"] + summary["processed"] == 40
    _check_exactly_once(batch_vault, 40)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(1, 41))
    assert all(r["status"] in {"enrolled", "rejected"} for r in rows)
    assert sum(r["status"] == "enrolled" for r in rows) >= 30

    again = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True)  # nothing left to do
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["processed"] == 0
    _check_exactly_once(batch_vault, 40)


@pytest.mark.data
def test_bad_rows_never_stop_the_batch(batch_vault: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-photo.jpg").write_bytes(b"this is not an image")
    (tmp_path / "consent.pdf").write_bytes(b"%PDF-1.4 signed consent (test)")
    extra = [
        {
            "collection": "people",
            "subject": "Ghost",
            "image": str(tmp_path / "missing.jpg"),
            "purpose": "t",
            "consent_text": "ok",
        },
        {
            "collection": "people",
            "subject": "Junk",
            "image": "not-a-photo.jpg",
            "purpose": "t",
            "consent_text": "ok",
        },
        {"collection": "nope", "subject": "X", "image": str(lfw("Hugo_Chavez", 1))},
        {"collection": "people", "subject": "No Consent", "image": str(lfw("Hugo_Chavez", 2))},
        {"collection": "people", "image": str(lfw("Hugo_Chavez", 3))},
        {
            "collection": "people",
            "subject": "Tony Blair",
            "external_id": "TB",
            "image": str(lfw("Tony_Blair", 1)),
        },
        {
            "collection": "people",
            "subject": "Hugo Chavez",
            "external_id": "HC",
            "purpose": "t",
            "consent_file": "consent.pdf",
            "image": str(lfw("Hugo_Chavez", 4)),
        },
    ]
    manifest = _manifest(tmp_path, 2, fmt="jsonl", extra=extra)
    with open(manifest, "a") as fh:
        fh.write("{this is not json\n")
    report = tmp_path / "report.csv"
    res = subprocess.run(
        [*BATCH, str(manifest), "--report", str(report), "--json"],
        env={**os.environ, "FACEVAULT_HOME": str(batch_vault)},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    with open(report, newline="") as fh:
        rows = {int(r["row"]): r for r in csv.DictReader(fh)}
    assert len(rows) == 12
    assert [rows[i]["status"] for i in (1, 2, 3, 4)] == ["enrolled"] * 4
    assert rows[5]["status"] == "error"
    assert rows[6]["status"] == "error"
    assert rows[7]["status"] == "error" and rows[7]["reason"] == "collection_not_found"
    assert rows[8]["status"] == "error" and "consent" in rows[8]["message"]
    assert rows[9]["status"] == "error" and rows[9]["reason"] == "bad_row"
    assert rows[10]["status"] == "rejected" and rows[10]["reason"] == "duplicate_image"
    assert rows[11]["status"] == "enrolled"
    assert rows[12]["status"] == "error" and rows[12]["reason"] == "bad_row"
    with facevault.open(str(batch_vault)) as v:
        assert {s["name"] for s in v.list_subjects("people")} == {"Tony Blair", "Colin Powell", "Hugo Chavez"}
        assert v.get_subject("people", "HC")["consent"]["evidence_kind"] == "file"
        assert v.doctor().ok


# ---- Ray ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (the processes this test's Ray head started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def ray_head() -> Iterator[tuple[str, set[str]]]:
    """A Ray head on loopback only, started with `ray start --block` and stopped by signalling exactly
    the processes it started (never `ray stop`, which stops every Ray instance of the machine)."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    baseline = set(_listening())
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="fvray")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--object-store-memory=200000000",
            f"--temp-dir={temp}",
        ],
        env={**os.environ, **RAY_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert head.poll() is None, "ray start failed"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline, "the Ray head did not come up"
        time.sleep(0.2)
    try:
        yield address, baseline
    finally:
        pids = [head.pid, *_descendants(head.pid)]
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal([p for p in pids if _alive(p)], signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def _listening() -> list[str]:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


@pytest.mark.data
@pytest.mark.slow
def test_ray_tasks_with_one_writer(batch_vault: Path, tmp_path: Path, ray_head: tuple[str, set[str]]) -> None:
    address, before = ray_head

    manifest = _manifest(tmp_path, 6)
    env = {
        **os.environ,
        "FACEVAULT_HOME": str(batch_vault),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    res = subprocess.run(
        [*BATCH, str(manifest), "--ray", address, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["processed"] == 12 and summary["enrolled"] >= 10
    _check_exactly_once(batch_vault, 12)
    # nothing Ray started listens on anything but loopback
    new = set(_listening()) - before
    assert new and all(a.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")) for a in new), new


def test_erasure_leaves_no_name_in_the_batch_records(batch_vault: Path, tmp_path: Path) -> None:
    """enroll-batch keeps one record per row (so a re-run skips it): after the person is erased it keeps
    the outcome, but not the image path (LFW names its files after the person), hash or message; and a
    conflict row never names the other person in the table."""
    from PIL import Image

    mirrored = tmp_path / "decoy.jpg"  # Tony Blair's face under another name: an identity conflict
    Image.open(lfw("Tony_Blair", 1)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, quality=95)
    decoy = {
        "collection": "people",
        "subject": "Decoy",
        "external_id": "DC",
        "purpose": "batch test",
        "consent_text": "decoy agreed (test)",
        "image": str(mirrored),
    }
    manifest = _manifest(tmp_path, n_per_person=3, extra=[decoy])
    from facevault.service.batch import enroll_batch

    with facevault.open(str(batch_vault)) as v:
        summary = enroll_batch(v, manifest, workers=1)
        assert summary.enrolled == 6 and summary.rejected == 1
        v.erase_subject("people", "ext:TB")
    with _db(batch_vault).connect() as conn:
        rows = conn.execute(select(t.batch_rows)).mappings().all()
    assert len(rows) == 7  # every row is still done: a re-run repeats nothing
    stored = json.dumps([dict(r) for r in rows], default=str)
    assert "Tony_Blair" not in stored and "Tony Blair" not in stored
    assert "Colin_Powell" in stored  # the other person's records are untouched
    conflict = [r for r in rows if r["reason"] == "identity_conflict"]
    assert (
        len(conflict) == 1 and conflict[0]["message"] == "the face already matches another enrolled subject"
    )
    with facevault.open(str(batch_vault)) as v:
        again = enroll_batch(v, manifest, workers=1)
    assert again.already_done == 7 and again.processed == 0
