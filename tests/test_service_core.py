"""The service core's own rules: read-only use cases take no write lock, the index manager applies a
change only after its commit, fault points run hooks where the tests need them, and the layout rules
of docs/ARCHITECTURE.md that import-linter cannot state (no mixins, module size, no private calls from
the edges)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

import facevault
from facevault import faults
from facevault.index.manager import IndexChange
from facevault.service import Vault

from .conftest import lfw

SRC = Path(__file__).resolve().parents[1] / "src" / "facevault"


@contextmanager
def statements(vault: Vault) -> Iterator[list[str]]:
    """Every SQL statement the vault's engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = vault.store.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _write_locks(seen: list[str]) -> int:
    return sum(1 for s in seen if s.strip().upper().startswith("BEGIN IMMEDIATE"))


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[Vault]:
    with facevault.open(str(tmp_path / "v"), create=True, actor="tester") as vault:
        vault.create_collection("g")
        vault.add_subject("g", "Tony Blair", purpose="t", consent_text="yes")
        photos = [lfw("Tony_Blair", 1), lfw("Tony_Blair", 2)]
        assert all(o.ok for o in vault.enroll("g", "Tony Blair", photos))
        yield vault


@pytest.mark.data
def test_a_search_takes_one_write_lock_for_its_audit_entry_and_reads_take_none(gallery: Vault) -> None:
    gallery.search("g", lfw("Tony_Blair", 3), purpose="warm-up")  # loads the model and the index
    with statements(gallery) as seen:
        result = gallery.search("g", lfw("Tony_Blair", 3), purpose="count the locks")
    assert result.faces[0].candidates[0].name == "Tony Blair"
    assert _write_locks(seen) == 1, [s for s in seen if s.upper().startswith("BEGIN")]
    with statements(gallery) as seen:
        gallery.list_collections()
        gallery.get_collection("g")
        gallery.get_subject("g", "Tony Blair")
        gallery.list_subjects("g")
        gallery.audit_entries(5)
        gallery.verify_audit()
        gallery.review_status("none")
        gallery.doctor()
        gallery.index_info("g")
    assert _write_locks(seen) == 0
    assert any(s.strip().upper() == "BEGIN" for s in seen)  # they do read in transactions


@pytest.mark.data
def test_the_index_changes_only_after_the_store_commit(gallery: Vault) -> None:
    ctx = gallery.context
    coll = gallery.get_collection("g")
    before = len(ctx.indexes.get(coll))
    vec = np.zeros(coll["dim"], dtype=np.float32)
    vec[0] = 1.0
    with pytest.raises(RuntimeError), ctx.indexes.committing(coll) as change:
        change.add(10_000, vec)
        raise RuntimeError("the store transaction failed")
    assert len(ctx.indexes.get(coll)) == before  # nothing applied
    # A change that does not match the store (nothing was committed for id 10000) is repaired by count.
    ctx.indexes.apply(coll, IndexChange(added_ids=[10_000], added_vectors=[vec]))
    assert len(ctx.indexes.get(coll)) == before
    assert 10_000 not in set(ctx.indexes.open(coll).ids().tolist())


def test_fault_point_hooks_run_where_and_as_often_as_asked() -> None:
    calls: list[str] = []
    with faults.hooked("test:point", lambda: calls.append("every")):
        with faults.hooked("test:point", lambda: calls.append("once"), once=True):
            faults.point("test:point")
            faults.point("test:point")
        faults.point("test:point")
        faults.point("test:other")
    faults.point("test:point")  # unhooked: nothing
    assert calls == ["every", "once", "every", "every"]


def test_vault_is_a_facade_without_mixins() -> None:
    assert Vault.__bases__ == (object,)


def test_no_module_over_600_lines_except_the_dlib_converter() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert set(long) <= {"models/dlib/convert.py"}, long


def test_the_edges_call_no_private_member_of_the_vault() -> None:
    private = re.compile(r"\b(vault|v|self\._vault)\._[a-z]")
    edges = [*(SRC / "api").rglob("*.py"), *(SRC / "cli").rglob("*.py"), SRC / "service" / "batch.py"]
    found = [
        f"{p.relative_to(SRC)}:{i}: {line.strip()}"
        for p in edges
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


@pytest.mark.data
def test_the_next_index_save_removes_what_a_killed_save_left(gallery: Vault) -> None:
    """A save killed half-way leaves a temporary file of protected templates that no row owns; every save
    runs under the index lock, so the next one removes it."""
    coll = gallery.get_collection("g")
    leftover = Path(gallery.settings.index_dir) / f"collection-{coll['id']}.faiss.k1ll.tmp"
    leftover.write_bytes(b"protected templates of a killed save")
    gallery.add_subject("g", "Colin Powell", purpose="t", consent_text="yes")
    assert gallery.enroll("g", "Colin Powell", [lfw("Colin_Powell", 1)])[0].ok  # commits, saves the index
    assert not leftover.exists()
    assert gallery.doctor().ok
