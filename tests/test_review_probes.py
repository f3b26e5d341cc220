"""The probe kept for review: sealed (no JPEG or pixels on disk), only for a case search with new
candidates, shown only with an audit entry, gone when the last candidate of its search is decided or
erased; repeated searches of the same photo in a case add no candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

from facevault.errors import NotFoundError

from .conftest import lfw


@pytest.fixture
def case_vault(vault):  # type: ignore[no-untyped-def]
    vault.create_collection("g")
    for person in ("Tony_Blair", "Hugo_Chavez"):
        vault.add_subject("g", person.replace("_", " "), purpose="testing", consent_text="signed (test)")
        assert vault.enroll("g", person.replace("_", " "), [lfw(person, 1)])[0].ok
    return vault


def _records(vault) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted((Path(vault.photos_dir) / ".review").glob("s*.sealed"))


def test_kept_probe_is_sealed_audited_and_deleted_after_the_decisions(case_vault) -> None:
    v = case_vault
    probe = lfw("Tony_Blair", 5)
    plain = v.search("g", probe, purpose="t")
    assert v.keep_review_probe(plain, probe) is False and _records(v) == []  # no case: nothing kept
    res = v.search("g", probe, purpose="t", case_id="K-1")
    assert v.keep_review_probe(res, probe) is True
    [record] = _records(v)
    raw = record.read_bytes()
    assert b"\xff\xd8\xff" not in raw and b"JFIF" not in raw  # sealed: no JPEG in the file
    again = v.search("g", probe, purpose="t", case_id="K-1")  # the same face again: no new candidate
    assert v.keep_review_probe(again, probe) is False
    [cand] = v.review_status("K-1").candidates
    face = v.review_probe("K-1", cand.candidate_id, "face")
    whole = v.review_probe("K-1", cand.candidate_id, "photo")
    assert face[:2] == whole[:2] == b"\xff\xd8"
    assert [e.details["shown"] for e in v.audit_entries(action="review.view")] == ["photo", "face"]
    info = v.review_details("K-1")["candidates"][cand.candidate_id]["probe"]
    assert info["kept"] is True and info["faces"] == 1 and info["face_position"] == 1
    assert max(info["sample_similarity"].values()) == pytest.approx(cand.similarity, abs=1e-4)
    with pytest.raises(NotFoundError):
        v.review_probe("OTHER", cand.candidate_id, "face")  # another case's id does not open it
    v.acting_as("key:aaaaaaaa", role="reviewer").review("K-1", cand.candidate_id, "confirm", "a", "same chin")
    assert len(_records(v)) == 1  # still pending: one confirmation of two
    v.acting_as("key:bbbbbbbb", role="reviewer").review("K-1", cand.candidate_id, "confirm", "b")
    assert _records(v) == []
    with pytest.raises(NotFoundError):
        v.review_probe("K-1", cand.candidate_id, "face")
    notes = [d["note"] for d in v.review_details("K-1")["candidates"][cand.candidate_id]["decisions"]]
    assert notes == ["same chin", None]
    queue = v.review_queue()
    assert queue == [
        {
            "case_id": "K-1",
            "candidates": 1,
            "pending": 0,
            "confirmed": 1,
            "rejected": 0,
            "collections": ["g"],
            "last_search_seq": res.audit_seq,
        }
    ]


def test_erasing_the_candidate_removes_the_kept_probe(case_vault) -> None:
    v = case_vault
    probe = lfw("Tony_Blair", 5)
    res = v.search("g", probe, purpose="t", case_id="K-2")
    assert v.keep_review_probe(res, probe) and len(_records(v)) == 1
    v.erase_subject("g", "Tony Blair")
    assert _records(v) == []
    assert v.review_details("K-2") == {"exists": True, "candidates": {}}
    assert v.review_details("NOPE")["exists"] is False
