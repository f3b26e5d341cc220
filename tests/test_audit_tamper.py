"""The audit log under attack: someone who can edit the database (sqlite3, directly) but holds neither
the audit key nor the head file kept next to it. Every tampering is detected by `audit verify` and
`doctor` (exit 8, a message, no traceback), and still detected after further real searches and
enrollments: nothing an ordinary append does heals a break. Breaks go away only through an admin's
audited acknowledgement; checkpoints kept elsewhere prove the log still extends them."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import facevault
from facevault.audit import Head
from facevault.cli import app
from facevault.errors import ConflictError, IntegrityError

from .conftest import data_path, lfw, run_cli
from .test_api_support import anyio_backend, api_app, asgi_client, auth, role_keys  # noqa: F401

runner = CliRunner()
PURPOSE = "incident review"


def cli(home: Path, *args: str) -> tuple[int, str]:
    """``facevault ARGS --home HOME`` in process: (exit code, everything printed). An exception that
    escaped the CLI (a traceback for a real user) fails the test here."""
    result = runner.invoke(app, [*args, "--home", str(home)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args} raised {result.exception!r}: {result.output}") from result.exception
    return result.exit_code, result.output


def assert_detected(home: Path) -> None:
    code, out = cli(home, "audit", "verify")
    assert code == 8 and "BROKEN" in out, out
    assert "Traceback" not in out
    code, out = cli(home, "doctor")
    assert code == 8 and "audit log: BROKEN" in out, out
    code, out = cli(home, "audit", "verify", "--json")
    status = json.loads(out)
    assert status["ok"] is False and status["problems"] and status["problem"], status


@pytest.fixture(scope="module")
def base_vault(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A vault with real enrollments and searches, built once; each test tampers with its own copy.
    Also keeps the database's head record as it was after entry #5 (for putting an old head back)."""
    data_path("lfw", "lfw-deepfunneled")
    home = tmp_path_factory.mktemp("audit-base") / "vault"
    with facevault.open(str(home), create=True) as v:
        v.create_collection("c")  # 1
        v.add_subject("c", "Tony Blair", purpose="t", consent_text="yes")  # 2
        v.add_subject("c", "Colin Powell", purpose="t", consent_text="yes")  # 3
        assert all(o.ok for o in v.enroll("c", "Tony Blair", [lfw("Tony_Blair", 1), lfw("Tony_Blair", 2)]))
        assert all(o.ok for o in v.enroll("c", "Colin Powell", [lfw("Colin_Powell", 1)]))  # 5
        with sqlite3.connect(v.settings.db_path) as db:
            old_head = db.execute("SELECT value FROM vault_meta WHERE key = 'audit_head'").fetchone()[0]
        for i, probe in enumerate((lfw("Tony_Blair", 3), lfw("Colin_Powell", 2), lfw("Tony_Blair", 4))):
            assert v.search("c", probe, purpose=f"{PURPOSE} {i}").faces[0].candidates  # 6, 7, 8
        status = v.verify_audit()
        assert status.ok and status.entries == 8, status
    return {"home": home, "old_head": old_head, "entries": 8}


@pytest.fixture
def home(base_vault: dict[str, Any], tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(base_vault["home"], copy)
    return copy


def tamper(home: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(home / "facevault.db") as db:
        for sql in statements:
            db.execute(sql, params if "?" in sql else ())


def head_file(home: Path) -> Path:
    return home / "keys" / "facevault.audit-head.json"


NEW_PEOPLE = {1: "Andre_Agassi", 2: "Angela_Bassett", 3: "Ann_Veneman"}


def more_work(home: Path, n: int) -> None:
    """Ordinary use after the tampering: a real search and a real enrollment (new person)."""
    with facevault.open(str(home)) as v:
        v.search("c", lfw("Tony_Blair", 5 + n), purpose="after the tampering")
        person = NEW_PEOPLE[n]  # a different real person each time: the same face under two subjects
        v.add_subject("c", person, purpose="t", consent_text="yes")  # is refused as resembling another
        assert v.enroll("c", person, [lfw(person, 1)])[0].ok


N = 8
SCENARIOS: dict[str, list[str]] = {
    "edit a field": ["UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = 6"],
    "delete a middle row": ["DELETE FROM audit_log WHERE seq = 4"],
    "delete the tail": [f"DELETE FROM audit_log WHERE seq > {N - 3}"],
    "delete all": ["DELETE FROM audit_log"],
    "delete all and the head": ["DELETE FROM audit_log", "DELETE FROM vault_meta WHERE key = 'audit_head'"],
    "reorder": [
        "UPDATE audit_log SET seq = -1 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = -1",
    ],
    "insert": [
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4",
        "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 104",
        "INSERT INTO audit_log (seq, at, action, actor, details, prev_hash, hash) SELECT 4, at, "
        "'search', 'ghost', '{}', hash, hash FROM audit_log WHERE seq = 3",
    ],
    "append a forged entry": [
        f"INSERT INTO audit_log (seq, at, action, actor, details, prev_hash, hash) SELECT {N + 1}, at, "
        f"'search', 'ghost', '{{}}', hash, hash FROM audit_log WHERE seq = {N}",
    ],
    "garbage timestamp": ["UPDATE audit_log SET at = 'yesterday-ish' WHERE seq = 5"],
    "timestamp of another type": ["UPDATE audit_log SET at = x'00ff' WHERE seq = 5"],
    "garbage details": ["UPDATE audit_log SET details = '{not json' WHERE seq = 5"],
    "garbage head record": ["UPDATE vault_meta SET value = 'not a head' WHERE key = 'audit_head'"],
    "head record of another shape": ["UPDATE vault_meta SET value = '[1, 2]' WHERE key = 'audit_head'"],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_tampering_is_detected_and_stays_detected(home: Path, name: str) -> None:
    tamper(home, *SCENARIOS[name])
    assert_detected(home)
    code, out = cli(home, "audit", "list", "--limit", "50")
    assert code in (0, 8) and "Traceback" not in out
    more_work(home, 1)
    more_work(home, 2)
    assert_detected(home)


def test_restoring_an_old_head_after_cutting_the_tail_is_detected(
    home: Path, base_vault: dict[str, Any]
) -> None:
    """The database is made self-consistent again (the head record of when the log ended at #5 put
    back): only the head kept outside the database can tell."""
    tamper(
        home,
        "DELETE FROM audit_log WHERE seq > 5",
        "UPDATE vault_meta SET value = ? WHERE key = 'audit_head'",
        params=(base_vault["old_head"],),
    )
    assert_detected(home)
    _, out = cli(home, "audit", "verify")
    assert "names entry #8, but the log ends at #5" in out, out
    more_work(home, 1)
    assert_detected(home)
    _, out = cli(home, "audit", "verify")
    assert "chain break recorded at #9" in out, out  # numbers past every one seen: never reused


def test_dropped_table_refuses_work_until_acknowledged(home: Path) -> None:
    tamper(home, "DROP TABLE audit_log")
    assert_detected(home)
    with facevault.open(str(home)) as v:
        with pytest.raises(IntegrityError) as searched:
            v.search("c", lfw("Tony_Blair", 6), purpose="nothing may go unaudited")
        assert searched.value.code == "audit_log_missing" and searched.value.exit_code == 8
        with pytest.raises(IntegrityError):
            v.add_subject("c", "Agassi", purpose="t", consent_text="yes")
        # nothing was done unaudited
        assert sorted(s.name for s in v.list_subjects("c")) == ["Colin Powell", "Tony Blair"]
    assert_detected(home)
    code, out = cli(home, "audit", "acknowledge", "--reason", "restored from a dump: table lost")
    assert code == 0 and "acknowledged 1 problems" in out, out
    assert cli(home, "audit", "verify")[0] == 0
    more_work(home, 1)
    assert cli(home, "audit", "verify")[0] == 0


def test_garbage_head_file_is_detected(home: Path) -> None:
    head_file(home).write_text("garbage", encoding="utf-8")
    assert_detected(home)
    more_work(home, 1)
    assert_detected(home)
    _, out = cli(home, "audit", "verify")
    assert "chain break recorded" in out and "unreadable or altered" in out, out


def test_a_head_file_of_another_vault_is_detected(home: Path, tmp_path: Path) -> None:
    with facevault.open(str(tmp_path / "other"), create=True) as other:
        other.create_collection("x")
        shutil.copy(head_file(tmp_path / "other"), head_file(home))
    assert_detected(home)
    _, out = cli(home, "audit", "verify")
    assert "does not match this vault's audit key" in out, out


def test_a_deleted_head_file_is_detected(home: Path) -> None:
    head_file(home).unlink()
    assert_detected(home)
    more_work(home, 1)
    assert_detected(home)


def test_malformed_states_end_without_a_traceback_in_a_real_process(home: Path) -> None:
    tamper(home, "UPDATE audit_log SET at = 'garbage', details = 'garbage' WHERE seq = 3")
    for args in (("audit", "verify"), ("doctor",), ("audit", "list"), ("audit", "export")):
        done = run_cli(str(home), *args)
        assert done.returncode == 8, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
    tamper(home, "DROP TABLE audit_log")
    done = run_cli(str(home), "audit", "verify")
    assert done.returncode == 8 and "audit_log table is missing" in done.stdout, done
    done = run_cli(str(home), "audit", "list")
    assert done.returncode == 8 and "error [audit_log_missing]" in done.stderr, done


def test_acknowledging_makes_verify_pass_is_audited_and_new_breaks_still_fail(home: Path) -> None:
    code, out = cli(home, "audit", "acknowledge", "--reason", "nothing is broken")
    assert code == 5 and "no chain break" in out, out  # nothing to acknowledge: nothing written
    tamper(home, "DELETE FROM audit_log WHERE seq = 4", f"DELETE FROM audit_log WHERE seq > {N - 2}")
    more_work(home, 1)
    assert_detected(home)
    code, out = cli(home, "audit", "acknowledge", "--reason", "  ")
    assert code == 3, out
    code, out = cli(home, "audit", "acknowledge", "--reason", "rows 4, 7, 8 lost in incident INC-9", "--json")
    assert code == 0, out
    ack = json.loads(out)
    kinds = sorted(p["kind"] for p in ack["acknowledged"])
    assert kinds == ["chain_break", "gap"], ack
    code, out = cli(home, "audit", "verify", "--json")
    status = json.loads(out)
    assert code == 0 and status["ok"] and len(status["acknowledged"]) == 2, status
    code, out = cli(home, "audit", "list", "--json", "--limit", "3")
    entry = next(e for e in json.loads(out) if e["action"] == "audit.acknowledge")
    assert entry["seq"] == ack["audit_seq"] and entry["actor"] == "tester"
    assert entry["details"]["reason"] == "rows 4, 7, 8 lost in incident INC-9"
    more_work(home, 2)
    assert cli(home, "doctor")[0] == 0
    # a new tampering, even of the very entry whose gap was acknowledged, is a new problem
    with sqlite3.connect(home / "facevault.db") as db:
        actor = db.execute("SELECT actor FROM audit_log WHERE seq = 5").fetchone()[0]
    tamper(home, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 5")
    assert_detected(home)
    tamper(home, "UPDATE audit_log SET actor = ? WHERE seq = 5", params=(actor,))
    assert cli(home, "audit", "verify")[0] == 0
    # and deleting the acknowledgement itself brings the old breaks back
    tamper(home, f"DELETE FROM audit_log WHERE seq = {ack['audit_seq']}")
    _, out = cli(home, "audit", "verify", "--json")
    assert {p["kind"] for p in json.loads(out)["problems"]} >= {"chain_break", "gap"}


def test_checkpoint_refuses_a_log_cut_after_it(home: Path, tmp_path: Path) -> None:
    cp_file = tmp_path / "elsewhere" / "checkpoint.json"
    cp_file.parent.mkdir()
    code, out = cli(home, "audit", "checkpoint", "--out", str(cp_file))
    assert code == 0, out
    cp = json.loads(cp_file.read_text())
    assert cp["seq"] == N + 1 and len(cp["mac"]) == 64 and cp["at"]
    assert cp_file.stat().st_mode & 0o077 == 0
    more_work(home, 1)
    code, out = cli(home, "audit", "verify", "--checkpoint", str(cp_file))
    assert code == 0 and f"extends the checkpoint #{N + 1}" in out, out
    # the log is cut back to before the checkpoint, and the break acknowledged: the checkpoint still says no
    tamper(home, "DELETE FROM audit_log WHERE seq > 6")
    more_work(home, 2)
    assert cli(home, "audit", "acknowledge", "--reason", "cut")[0] == 0
    assert cli(home, "audit", "verify")[0] == 0
    code, out = cli(home, "audit", "verify", "--checkpoint", str(cp_file))
    assert code == 8 and f"entry #{N + 1} of the checkpoint" in out and "is gone" in out, out
    # a checkpoint altered to name another entry, or not a checkpoint at all
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**cp, "seq": 3}))
    code, out = cli(home, "audit", "verify", "--checkpoint", str(forged))
    assert code == 8 and "MAC does not match" in out, out
    for bad in ("not json", "[]", json.dumps({**cp, "seq": "x"})):
        forged.write_text(bad)
        code, out = cli(home, "audit", "verify", "--checkpoint", str(forged))
        assert code == 3 and "invalid_checkpoint" in out, out
    assert cli(home, "audit", "verify", "--checkpoint", str(tmp_path / "missing.json"))[0] == 3


def test_no_checkpoint_of_a_broken_log(home: Path) -> None:
    tamper(home, "DELETE FROM audit_log WHERE seq = 4")
    code, out = cli(home, "audit", "checkpoint")
    assert code == 8 and "audit_chain_broken" in out, out


def test_crash_between_commit_and_head_write_verifies_after_the_next_append(home: Path) -> None:
    done = run_cli(
        str(home), "search", "c", str(lfw("Tony_Blair", 6)), "--purpose", "p", crash_at="audit:committed"
    )
    assert done.returncode == -9, done.stderr
    with facevault.open(str(home)) as v:
        status = v.verify_audit()
        assert status.ok and status.entries == N + 1, status  # the search's entry was committed
        assert status.external_head["seq"] == N and status.external_head["behind"] == 1
        v.add_subject("c", "Next", purpose="t", consent_text="yes")
        status = v.verify_audit()
        assert status.ok and status.external_head["seq"] == N + 2 and status.external_head["behind"] == 0
    assert cli(home, "doctor")[0] == 0


def test_the_head_file_is_written_atomically_and_never_backwards(home: Path) -> None:
    with facevault.open(str(home)) as v:
        head = v.context.audit_head
        before = head.read().head
        assert before is not None and before.seq == N
        assert head.advance(Head(N - 3, "0" * 64)) is False  # a slower writer finishing late
        assert head.read().head == before
        assert head_file(home).stat().st_mode & 0o077 == 0
        assert not list(head_file(home).parent.glob("*.tmp"))


def test_racing_processes_keep_one_chain_and_the_head_file_level(home: Path) -> None:
    """Three processes append at once: the database side serialises (BEGIN IMMEDIATE) and the head file
    ends at the last entry, whatever order the processes finished their file writes in."""
    script = (
        "import sys, facevault\n"
        "with facevault.open(sys.argv[1]) as v:\n"
        "    for i in range(12):\n"
        "        v.add_subject('c', f'{sys.argv[2]}-{i}', purpose='t', consent_text='yes')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home), f"p{n}"], stderr=subprocess.PIPE, text=True
        )
        for n in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with facevault.open(str(home)) as v:
        status = v.verify_audit()
        assert status.ok and status.entries == N + 36, status
        assert status.external_head["seq"] == N + 36 and status.external_head["behind"] == 0


def test_threads_advancing_the_head_file_end_at_the_last_entry(home: Path) -> None:
    with facevault.open(str(home)) as v:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(10):
                    v.add_subject("c", f"t{n}-{i}", purpose="t", consent_text="yes")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        status = v.verify_audit()
        assert status.ok and status.external_head["seq"] == N + 40 == status.head_seq


def test_acknowledge_is_for_admins_only(home: Path) -> None:
    tamper(home, "DELETE FROM audit_log WHERE seq = 4")
    with facevault.open(str(home)) as v:
        with pytest.raises(ConflictError):
            v.acting_as("key:abc", role="auditor").acknowledge_chain_break("not mine to say")
        assert not v.verify_audit().ok


@pytest.mark.anyio
async def test_api_audit_endpoints_answer_codes_never_500(vault, api_app, role_keys) -> None:  # noqa: F811
    aud, admin = auth(role_keys["auditor"]), auth(role_keys["admin"])
    vault.create_collection("c")
    vault.add_subject("c", "A", purpose="t", consent_text="yes")
    async with asgi_client(api_app) as c:
        assert (await c.get("/api/v1/audit/verify", headers=aud)).json()["ok"] is True
        cp = (await c.post("/api/v1/audit/checkpoint", headers=aud)).json()
        assert cp["format"] == "facevault-audit-checkpoint-1"
        ok = await c.post("/api/v1/audit/verify", json={"checkpoint": cp}, headers=aud)
        assert ok.status_code == 200 and ok.json()["checkpoint"]["ok"] is True
        bad = await c.post("/api/v1/audit/verify", json={"checkpoint": {"x": 1}}, headers=aud)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_checkpoint"

        tamper(vault.settings.home, "UPDATE audit_log SET at = 'garbage', details = '{' WHERE seq = 2")
        broken = await c.get("/api/v1/audit/verify", headers=aud)
        assert broken.status_code == 409, broken.text
        body = broken.json()["error"]
        assert body["code"] == "audit_chain_broken" and body["status"]["first_bad_seq"] == 2
        listed = await c.get("/api/v1/audit", headers=aud)
        assert listed.status_code == 409 and listed.json()["error"]["code"] == "audit_entry_malformed"
        exported = await c.get("/api/v1/audit/export", headers=aud)
        assert exported.status_code == 409
        assert (await c.post("/api/v1/audit/checkpoint", headers=aud)).status_code == 409
        refused = await c.post("/api/v1/audit/acknowledge", json={"reason": "x"}, headers=aud)
        assert refused.status_code == 403
        acked = await c.post("/api/v1/audit/acknowledge", json={"reason": "bad row 2"}, headers=admin)
        assert acked.status_code == 200 and acked.json()["acknowledged"][0]["seq"] == 2, acked.text
        assert (await c.get("/api/v1/audit/verify", headers=aud)).status_code == 200
        again = await c.post("/api/v1/audit/acknowledge", json={"reason": "again"}, headers=admin)
        assert again.status_code == 409 and again.json()["error"]["code"] == "no_chain_break"

        tamper(vault.settings.home, "DROP TABLE audit_log")
        dropped = await c.get("/api/v1/audit", headers=aud)
        assert dropped.status_code == 409 and dropped.json()["error"]["code"] == "audit_log_missing"
        gone = await c.get("/api/v1/audit/verify", headers=aud)
        assert gone.status_code == 409 and "missing" in gone.json()["error"]["message"]
