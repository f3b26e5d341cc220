"""Open-set 1:N search: the right person first, an honest empty answer, and a log entry for each call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facevault import calibration
from facevault.errors import ImageError, InputError, NoFaceError, NotFoundError, PurposeRequiredError

from .conftest import jpeg_bytes, lfw, write_image


@pytest.fixture
def lfw_vault(vault):  # type: ignore[no-untyped-def]
    """Three real people, two photos each."""
    vault.create_collection("g")
    for name in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez"):
        vault.add_subject("g", name.replace("_", " "), purpose="test", consent_text="consent on file")
        out = vault.enroll("g", name.replace("_", " "), [lfw(name, 1), lfw(name, 2)])
        assert all(o.ok for o in out), [o.to_dict() for o in out]
    return vault


def test_mated_probe_ranks_the_right_person_first(lfw_vault) -> None:
    res = lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="unit test", case_id="T-1", top_k=3)
    assert res.matched and len(res.faces) == 1
    best = res.faces[0].candidates[0]
    assert best.name == "Tony Blair"
    assert best.similarity >= res.threshold
    assert 0 < best.estimated_fmr <= res.threshold_fmr
    assert best.samples and best.samples[0].image.endswith(("Tony_Blair_0001.jpg", "Tony_Blair_0002.jpg"))
    assert len(best.samples[0].box) == 4
    d = res.to_dict()
    assert d["faces"][0]["candidates"][0]["name"] == "Tony Blair" and d["matched"] is True


def test_stranger_gets_an_empty_answer(lfw_vault) -> None:
    res = lfw_vault.search("g", lfw("Jacques_Chirac", 1), purpose="unit test")
    assert not res.matched
    assert res.faces[0].candidates == []


def test_threshold_and_fmr_options(lfw_vault) -> None:
    loose = lfw_vault.search("g", lfw("Jacques_Chirac", 1), purpose="t", threshold=-1.0, top_k=3)
    assert [len(f.candidates) for f in loose.faces] == [3]
    sims = [c.similarity for c in loose.faces[0].candidates]
    assert sims == sorted(sims, reverse=True)
    cal = calibration.for_model("dlib-resnet-v1")
    strict = lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="t", fmr=1e-3)
    assert strict.threshold == pytest.approx(cal.threshold_for(1e-3), abs=1e-4)
    # A threshold and a false-match rate at once would silently drop one of them: an input error.
    before = len(lfw_vault.audit_entries(1000))
    with pytest.raises(InputError) as both:
        lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="t", fmr=1e-3, threshold=0.9)
    assert both.value.code == "invalid_threshold" and both.value.exit_code == 3
    with pytest.raises(InputError):
        lfw_vault.verify(lfw("Tony_Blair", 5), lfw("Tony_Blair", 6), fmr=1e-3, threshold=0.9)
    refused = lfw_vault.audit_entries(1000)[: len(lfw_vault.audit_entries(1000)) - before]
    assert [e["action"] for e in refused] == ["search"]  # the refused search is accounted for; it ran nothing
    assert (
        refused[0]["details"].get("error") == "invalid_threshold"
        and "candidates" not in refused[0]["details"]
    )


def test_purpose_is_required_and_every_search_is_logged(lfw_vault, tmp_path: Path) -> None:
    before = len(lfw_vault.audit_entries(1000))
    with pytest.raises(PurposeRequiredError):
        lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="  ")
    res = lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="find a suspect", case_id="C-9")
    entries = lfw_vault.audit_entries(1000)
    assert len(entries) == before + 1
    top = entries[0]
    assert top["seq"] == res.audit_seq and top["action"] == "search"
    assert top["purpose"] == "find a suspect" and top["case_id"] == "C-9"
    assert top["probe_sha256"] == res.probe_sha256 and top["actor"] == "tester"
    assert top["details"]["candidates"][0][0][0] == res.faces[0].candidates[0].subject_id
    assert lfw_vault.verify_audit().ok


def test_probe_without_face_corrupt_probe_unknown_collection(lfw_vault, tmp_path: Path) -> None:
    blank = write_image(tmp_path / "blank.jpg", np.full((100, 100, 3), 200, np.uint8))
    with pytest.raises(NoFaceError):
        lfw_vault.search("g", blank, purpose="t")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(lfw("Tony_Blair", 5).read_bytes()[:2000])
    with pytest.raises(ImageError):
        lfw_vault.search("g", bad, purpose="t")
    with pytest.raises(NotFoundError):
        lfw_vault.search("nope", lfw("Tony_Blair", 5), purpose="t")
    outcomes = [e["details"].get("outcome") for e in lfw_vault.audit_entries(2)]
    assert outcomes == ["error", "no_face"]  # failed searches are on the record too


def test_deleted_subject_is_never_returned(lfw_vault) -> None:
    assert lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="t").matched
    lfw_vault.delete_subject("g", "Tony Blair")
    res = lfw_vault.search("g", lfw("Tony_Blair", 5), purpose="t")
    assert all(c.name != "Tony Blair" for f in res.faces for c in f.candidates)


def test_every_face_in_a_group_photo_is_searched(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    vault.create_collection("c")
    vault.add_subject("c", "Eileen", purpose="t", consent_text="yes")
    assert vault.enroll("c", "Eileen", [write_image(tmp_path / "e.jpg", astronaut)])[0].ok
    other = np.asarray(Image.open(lfw("Hugo_Chavez", 3)).convert("RGB").resize((300, 300)))
    group = np.hstack([np.asarray(Image.fromarray(astronaut).resize((340, 300))), other])
    res = vault.search("c", ("group.jpg", jpeg_bytes(group)), purpose="t")
    assert len(res.faces) == 2
    by_x = sorted(res.faces, key=lambda f: f.box[0])
    assert by_x[0].candidates and by_x[0].candidates[0].name == "Eileen"
    assert by_x[1].candidates == []
