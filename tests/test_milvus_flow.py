"""The whole engine flow (enroll, search, erase, doctor, reopen) with Milvus as the vector index: Milvus
Lite, and a real Milvus standalone server with HNSW and IVF_SQ8 when FACEVAULT_TEST_MILVUS_URI names one
(tests/milvus_server/run.sh)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

import facevault

from .conftest import lfw

pytest.importorskip("pymilvus")

SERVER_URI = os.environ.get("FACEVAULT_TEST_MILVUS_URI")
_no_server = pytest.mark.skipif(
    not SERVER_URI, reason="no Milvus server: FACEVAULT_TEST_MILVUS_URI is set by tests/milvus_server/run.sh"
)
_dbs = itertools.count()


def _spec(kind: str) -> str:
    if kind == "lite":
        pytest.importorskip("milvus_lite")
        return "milvus://faces.db"
    # one Milvus database per vault: two vaults on one server never share a collection
    db = f"flow_{os.getpid()}_{next(_dbs)}"
    return f"{SERVER_URI}/{db}?" + {"hnsw": "index=HNSW", "ivf_sq8": "index=IVF_SQ8&nlist=16"}[kind]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("lite", id="milvus_lite"),
        pytest.param("hnsw", id="milvus_server_hnsw", marks=_no_server),
        pytest.param("ivf_sq8", id="milvus_server_ivf_sq8", marks=_no_server),
    ],
)
def test_enroll_search_erase_doctor_on_milvus(tmp_path: Path, kind: str) -> None:
    home = str(tmp_path / "vault")
    spec = _spec(kind)
    vault = facevault.open(home, create=True, index=spec)
    assert vault.index_backend == spec
    vault.create_collection("g")
    for name in ("Tony_Blair", "Hugo_Chavez"):
        vault.add_subject("g", name, purpose="test", consent_text="yes")
        assert all(o.ok for o in vault.enroll("g", name, [lfw(name, 1), lfw(name, 2)]))
    info = vault.index_info("g")
    assert info["kind"] == ("milvus-lite" if kind == "lite" else "milvus")
    assert info["count"] == 4
    if kind != "lite":
        assert info["index_type"] == {"hnsw": "HNSW", "ivf_sq8": "IVF_SQ8"}[kind]
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
    assert again.index_backend == spec
    assert again.index_info("g")["count"] == 2
    assert again.doctor(repair=True).ok
    res = again.search("g", lfw("Hugo_Chavez", 3), purpose="after reopen", threshold=-1)
    assert [c.name for c in res.faces[0].candidates] == ["Hugo_Chavez"]
    again.close()
