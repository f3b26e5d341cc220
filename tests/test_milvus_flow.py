"""The whole engine flow (enroll, search, erase, doctor) with Milvus Lite as the vector index."""

from __future__ import annotations

from pathlib import Path

import pytest

import facevault

from .conftest import lfw

pytest.importorskip("pymilvus")


@pytest.mark.slow
def test_enroll_search_erase_doctor_on_milvus_lite(tmp_path: Path) -> None:
    home = str(tmp_path / "vault")
    vault = facevault.open(home, create=True, index="milvus://faces.db")
    assert vault.index_backend == "milvus://faces.db"
    vault.create_collection("g")
    for name in ("Tony_Blair", "Hugo_Chavez"):
        vault.add_subject("g", name, purpose="test", consent_text="yes")
        assert all(o.ok for o in vault.enroll("g", name, [lfw(name, 1), lfw(name, 2)]))
    assert vault.index_info("g")["kind"] == "milvus-lite"
    assert vault.index_info("g")["count"] == 4
    res = vault.search("g", lfw("Tony_Blair", 9), purpose="milvus flow", threshold=-1)
    assert res.faces[0].candidates[0].name == "Tony_Blair"
    assert vault.doctor().ok
    receipt = vault.erase_subject("g", "Tony_Blair")
    assert receipt["samples_erased"] == 2
    res = vault.search("g", lfw("Tony_Blair", 9), purpose="after erasure", threshold=-1)
    assert [c.name for c in res.faces[0].candidates] == ["Hugo_Chavez"]
    assert vault.index_info("g")["count"] == 2
    vault.close()
    # the vault remembers its backend; repair works through it too
    again = facevault.open(home)
    assert again.index_backend == "milvus://faces.db"
    assert again.doctor(repair=True).ok
    again.close()
