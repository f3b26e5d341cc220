"""``kill -9`` of a real Milvus standalone server during a batch enrollment and during an erasure
(tests/milvus_server/run.sh starts it in a loopback-only network namespace and gives its pid here).

What must hold: while the server is down facevault refuses clearly (``index_unavailable``, within the
index URL's timeout), never answers from a half-updated index; after the restart the store is the truth
(the resumed batch repeats nothing, an interrupted erasure is finished), ``facevault doctor --repair``
leaves index and store holding the same samples, and no erased template can be found again."""

from __future__ import annotations

import csv
import itertools
import os
import sqlite3
from pathlib import Path

import pytest

import facevault
from facevault import faults
from facevault.errors import FaceVaultError

from .conftest import lfw, run_cli

URI = os.environ.get("FACEVAULT_TEST_MILVUS_URI")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.data,
    pytest.mark.skipif(
        not URI, reason="no Milvus server: FACEVAULT_TEST_MILVUS_URI is set by tests/milvus_server/run.sh"
    ),
]
PEOPLE = ("Tony_Blair", "Hugo_Chavez")
_dbs = itertools.count()


def _spec() -> str:
    """IVF_SQ8 in a database of its own; a 15 s timeout so a dead server is noticed quickly (and a busy
    one on 2 shared cores is not taken for dead)."""
    return f"{URI}/faults_{os.getpid()}_{next(_dbs)}?index=IVF_SQ8&nlist=16&timeout=15"


def _kill_server() -> None:
    from tests.milvus_server import server

    server.kill9()


def _restart_server() -> None:
    from tests.milvus_server import server

    server.restart()


def _store_ids(home: str) -> set[int]:
    with sqlite3.connect(f"{home}/facevault.db") as db:
        return {r[0] for r in db.execute("SELECT id FROM samples")}


def _index_ids(vault: facevault.Vault, collection: str) -> set[int]:
    ctx = vault.context
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
    return set(ctx.indexes.open(coll).ids().tolist())


def _refuses_while_down(vault: facevault.Vault) -> None:
    with pytest.raises(FaceVaultError) as err:
        vault.search("people", lfw("Hugo_Chavez", 9), purpose="server down", threshold=-1)
    assert err.value.code == "index_unavailable", err.value


def _repair_and_check(home: str) -> None:
    done = run_cli(home, "doctor", "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    check = run_cli(home, "doctor")
    assert check.returncode == 0, check.stdout + check.stderr


def _manifest(tmp_path: Path, per_person: int) -> Path:
    path = tmp_path / "batch.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["collection", "subject", "purpose", "consent_text", "image"])
        for n in range(1, per_person + 1):
            for name in PEOPLE:
                w.writerow(["people", name, "fault test", "yes (test)", str(lfw(name, n))])
    return path


def test_milvus_server_kill9_during_batch_enrollment(tmp_path: Path) -> None:
    from facevault.service.batch import enroll_batch

    home = str(tmp_path / "vault")
    manifest = _manifest(tmp_path, 8)
    vault = facevault.open(home, create=True, index=_spec())
    vault.create_collection("people", purpose="fault test")
    commits = itertools.count(1)

    def kill_at_second_commit() -> None:  # the 2nd chunk is in the store, not yet in the index
        if next(commits) == 2:
            _kill_server()

    with faults.hooked("enroll:db_committed", kill_at_second_commit), pytest.raises(FaceVaultError) as err:
        enroll_batch(vault, manifest, workers=1, commit_every=4, commit_seconds=3600)
    assert err.value.code == "index_unavailable", err.value
    stored = _store_ids(home)
    assert len(stored) == 8  # two chunks committed: the store is ahead of the index
    _refuses_while_down(vault)
    _restart_server()

    # the index is rebuilt from the store on first use, and the resumed batch repeats nothing
    assert _index_ids(vault, "people") <= stored
    summary = enroll_batch(vault, manifest, workers=1, commit_every=4)
    assert summary.already_done == 8 and summary.already_done + summary.processed == 16
    stored = _store_ids(home)
    assert len(stored) == 16
    res = vault.search("people", lfw("Hugo_Chavez", 9), purpose="after restart", threshold=-1)
    assert res.faces[0].candidates[0].name == "Hugo_Chavez"
    assert vault.doctor().ok
    assert _index_ids(vault, "people") == stored
    vault.close()
    _repair_and_check(home)
    with facevault.open(home) as again:
        assert _index_ids(again, "people") == _store_ids(home)


def test_milvus_server_kill9_during_erasure(tmp_path: Path) -> None:
    home = str(tmp_path / "vault")
    vault = facevault.open(home, create=True, index=_spec())
    vault.create_collection("people", purpose="fault test")
    for name in PEOPLE:
        vault.add_subject("people", name, purpose="fault test", consent_text="yes (test)")
        assert all(o.ok for o in vault.enroll("people", name, [lfw(name, n) for n in range(1, 5)]))
    before = _store_ids(home)
    assert _index_ids(vault, "people") == before and len(before) == 8

    with faults.hooked("erase:db_committed", _kill_server), pytest.raises(FaceVaultError) as err:
        vault.erase_subject("people", "Tony_Blair")
    assert err.value.code == "index_unavailable", err.value
    erased = before - _store_ids(home)
    assert len(erased) == 4  # the erasure is committed in the store (and recorded as pending)
    _refuses_while_down(vault)
    vault.close()
    _restart_server()

    # the store is the truth: even before any repair, the erased person is never a candidate
    with facevault.open(home) as again:  # opening finishes the interrupted erasure
        assert not erased & _index_ids(again, "people")
        res = again.search("people", lfw("Tony_Blair", 9), purpose="after erasure", threshold=-1)
        assert {c.name for c in res.faces[0].candidates} == {"Hugo_Chavez"}
    _repair_and_check(home)
    with facevault.open(home) as again:
        left = _index_ids(again, "people")
        assert left == _store_ids(home) and not erased & left and len(left) == 4


def test_milvus_server_erasure_pending_until_server_returns(tmp_path: Path) -> None:
    """An erasure killed with the server, reopened while the server is still down: the erasure stays
    pending (the open does not fail, the index is not trusted), and doctor --repair finishes it later."""
    home = str(tmp_path / "vault")
    vault = facevault.open(home, create=True, index=_spec())
    vault.create_collection("people", purpose="fault test")
    for name in PEOPLE:
        vault.add_subject("people", name, purpose="fault test", consent_text="yes (test)")
        assert all(o.ok for o in vault.enroll("people", name, [lfw(name, 1), lfw(name, 2)]))
    before = _store_ids(home)
    with faults.hooked("erase:db_committed", _kill_server), pytest.raises(FaceVaultError):
        vault.erase_subject("people", "Hugo_Chavez")
    vault.close()
    erased = before - _store_ids(home)
    with facevault.open(home) as down:  # the server is still down: the erasure stays pending
        assert not down.doctor().ok
    _restart_server()
    _repair_and_check(home)
    with facevault.open(home) as again:
        left = _index_ids(again, "people")
        assert left == _store_ids(home) and not erased & left
