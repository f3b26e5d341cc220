"""1:1 verification, store/index agreement (doctor), and the crash window between store and index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facevault.errors import ImageError, NoFaceError
from facevault.index import FaissIndex

from .conftest import lfw, write_image


def test_verify_same_and_different_person() -> None:
    import facevault

    v = facevault.open(create=True)
    same = v.verify(lfw("Colin_Powell", 1), lfw("Colin_Powell", 3))
    diff = v.verify(lfw("Colin_Powell", 1), lfw("Tony_Blair", 1))
    assert same.same_person and not diff.same_person
    assert same.similarity > diff.similarity
    assert same.threshold == diff.threshold and same.threshold_fmr == pytest.approx(1e-3)
    assert diff.estimated_fmr > same.estimated_fmr
    assert set(same.to_dict()) >= {"similarity", "threshold", "same_person", "face_a", "face_b"}
    assert [e["action"] for e in v.audit_entries(2)] == ["verify", "verify"]


def test_verify_bad_inputs(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    face = write_image(tmp_path / "f.jpg", astronaut)
    blank = write_image(tmp_path / "b.jpg", np.zeros((80, 80, 3), np.uint8))
    with pytest.raises(NoFaceError, match="image B"):
        vault.verify(face, blank)
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError):
        vault.verify(empty, face)


def _enrolled(vault, astronaut: np.ndarray, tmp_path: Path):  # type: ignore[no-untyped-def]
    vault.create_collection("c")
    vault.add_subject("c", "Eileen", purpose="t", consent_text="yes")
    out = vault.enroll(
        "c",
        "Eileen",
        [
            write_image(tmp_path / "a.jpg", astronaut),
            write_image(tmp_path / "b.jpg", astronaut[:, ::-1].copy()),
        ],
    )
    assert all(o.ok for o in out)
    return vault.get_collection("c")


def test_doctor_finds_and_repairs_a_lost_index(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    coll = _enrolled(vault, astronaut, tmp_path)
    assert vault.doctor().ok
    index_file = vault.settings.index_dir / f"collection-{coll['id']}.faiss"
    index_file.unlink()
    report = vault.doctor()
    assert not report.ok
    assert "2 stored samples are missing from the index" in report.collections[0]["problems"]
    fixed = vault.doctor(repair=True)
    assert fixed.ok and fixed.repaired and fixed.collections[0]["indexed"] == 2
    assert vault.doctor().ok


def test_stale_index_entries_are_never_returned(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    """Simulates a crash after a delete committed in the store but before the index was saved."""
    coll = _enrolled(vault, astronaut, tmp_path)
    path = vault.settings.index_dir / f"collection-{coll['id']}.faiss"
    before = path.read_bytes()
    header = path.with_suffix(".json").read_bytes()
    vault.delete_subject("c", "Eileen")
    path.write_bytes(before)  # the old index comes back, as if the index write never happened
    path.with_suffix(".json").write_bytes(header)
    assert "2 index entries have no stored sample" in vault.doctor().collections[0]["problems"]
    vault.add_subject("c", "Someone", purpose="t", consent_text="yes")
    res = vault.search("c", write_image(tmp_path / "p.jpg", astronaut), purpose="t", threshold=-1)
    assert res.faces[0].candidates == []
    assert vault.doctor().ok  # the search noticed the count mismatch and rebuilt the index


def test_corrupt_index_file_is_rebuilt(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    coll = _enrolled(vault, astronaut, tmp_path)
    path = vault.settings.index_dir / f"collection-{coll['id']}.faiss"
    path.write_bytes(b"garbage")
    assert not vault.doctor().ok
    res = vault.search("c", write_image(tmp_path / "p.jpg", astronaut), purpose="t")
    assert res.faces[0].candidates[0].name == "Eileen"
    assert len(FaissIndex(path, 128, "dlib-resnet-v1")) == 2


def test_collection_delete_removes_everything(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    coll = _enrolled(vault, astronaut, tmp_path)
    counts = vault.delete_collection("c")
    assert counts == {"crops": 0, "samples": 2, "images": 2, "subjects": 1}
    assert not (vault.settings.index_dir / f"collection-{coll['id']}.faiss").exists()
    assert vault.list_collections() == []


def test_doctor_reports_a_cut_audit_log_until_it_is_acknowledged(
    vault, astronaut: np.ndarray, tmp_path: Path
) -> None:
    """doctor runs the same audit check as `audit verify`: a cut end stays a problem after more work
    (the next append records it as a chain break), and only an acknowledgement clears it."""
    import sqlite3

    _enrolled(vault, astronaut, tmp_path)
    report = vault.doctor()
    assert report.ok and report.audit["external_head"]["behind"] == 0, report.audit
    with sqlite3.connect(vault.settings.db_path) as db:
        db.execute("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
    assert "were removed" in vault.doctor().audit["problem"]
    vault.search("c", write_image(tmp_path / "p.jpg", astronaut), purpose="t")
    report = vault.doctor()
    assert not report.ok and report.audit["problems"][0]["kind"] == "chain_break", report.audit
    assert not vault.doctor(repair=True).ok  # repair rebuilds indexes; it never clears a break
    vault.acknowledge_chain_break("the last entry was lost in a restore")
    report = vault.doctor()
    assert report.ok and [p["kind"] for p in report.audit["acknowledged"]] == ["chain_break"]
