"""The built-in ``dlib-resnet-v1-lm68`` pack: the default weights aligned with dlib's 68-point landmarks,
refused until its non-commercial license is accepted, then a complete, calibrated pack."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import facevault
from facevault import calibration, imaging
from facevault.cli.models import models_app
from facevault.errors import ModelError
from facevault.models import get_pack
from facevault.models.detectors import with_detector
from facevault.models.dlib.license import LICENSE_TEXT, LM68_PACK, record_path
from facevault.pipeline import Pipeline

from .conftest import lfw


@pytest.fixture(autouse=True)
def _fresh_pack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Each test starts with the pack unloaded, no models folder registered by earlier tests (an
    acceptance in any of them counts), and an empty models folder of its own."""
    from facevault.models import registry

    root = tmp_path / "models"
    monkeypatch.setenv("FACEVAULT_MODELS", str(root))
    saved = set(registry._registered_roots)
    registry._registered_roots.clear()
    registry._loaded.pop(LM68_PACK, None)
    yield root
    registry._loaded.pop(LM68_PACK, None)
    registry._registered_roots.clear()
    registry._registered_roots.update(saved)


def _accept(root: Path) -> dict[str, object]:
    res = CliRunner().invoke(models_app, ["accept-license", LM68_PACK, "--json", "--models-dir", str(root)])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_refused_until_the_license_is_accepted(_fresh_pack: Path) -> None:
    with pytest.raises(ModelError) as err:
        get_pack(LM68_PACK)
    assert err.value.code == "license_not_accepted"
    assert f"facevault models accept-license {LM68_PACK}" in err.value.message
    listed = json.loads(CliRunner().invoke(models_app, ["list", "--json"]).output)
    entry = {b["name"]: b for b in listed["builtin"]}[LM68_PACK]
    assert entry["commercial_use"] is False and entry["license_accepted_at"] is None

    record = _accept(_fresh_pack)
    assert record["pack"] == LM68_PACK and record["accepted_by"] == "tester"
    saved = json.loads(record_path(_fresh_pack).read_text(encoding="utf-8"))
    assert saved["license_text"] == LICENSE_TEXT and saved["accepted_at"] == record["accepted_at"]
    listed = json.loads(CliRunner().invoke(models_app, ["list", "--json"]).output)
    entry = {b["name"]: b for b in listed["builtin"]}[LM68_PACK]
    assert entry["license_accepted_at"] == record["accepted_at"]
    assert get_pack(LM68_PACK).detector.landmarks == 68


def test_acceptance_of_another_text_does_not_count(_fresh_pack: Path) -> None:
    _accept(_fresh_pack)
    p = record_path(_fresh_pack)
    changed = {**json.loads(p.read_text()), "license_text": "something else"}
    p.write_text(json.dumps(changed), encoding="utf-8")
    with pytest.raises(ModelError):
        get_pack(LM68_PACK)


def test_only_builtin_gated_packs_take_accept_license(_fresh_pack: Path) -> None:
    args = ["accept-license", "dlib-resnet-v1", "--models-dir", str(_fresh_pack)]
    res = CliRunner().invoke(models_app, args)
    assert res.exit_code == 4
    assert not (_fresh_pack / "dlib-resnet-v1").exists()


def test_68_point_alignment_on_a_real_face(_fresh_pack: Path) -> None:
    """Same network, other alignment: the eyes and nose the quality module reads stay where the 5-point
    model puts them, and the two packs' vectors of one face are close (one embedding space)."""
    pixels = imaging.load_image(lfw("Tony_Blair", 1)).pixels
    _accept(_fresh_pack)
    # the same detector for both (the default pack's own is the CNN; the 68-point pack's is HOG)
    hog = with_detector(get_pack("dlib-resnet-v1"), "dlib-hog", _fresh_pack)
    five = Pipeline(hog, tta="flip").analyze(pixels)
    sixty_eight = Pipeline(get_pack(LM68_PACK), tta="flip").analyze(pixels)
    assert len(five) == len(sixty_eight) == 1
    a, b = five[0], sixty_eight[0]
    assert a.face.landmarks.shape == (5, 2) and b.face.landmarks.shape == (68, 2)
    assert a.face.box == b.face.box
    for p5, p68 in ((a.face.left_eye, b.face.left_eye), (a.face.right_eye, b.face.right_eye)):
        assert np.hypot(p5[0] - p68[0], p5[1] - p68[1]) < 0.15 * a.face.eye_distance
    assert abs(a.quality.yaw - b.quality.yaw) < 10 and abs(a.quality.roll - b.quality.roll) < 5
    cos = float(a.embedding @ b.embedding)
    assert 0.9 < cos < 0.9999  # different chips, same person in the same space
    assert calibration.for_model(LM68_PACK).threshold_for(1e-3) > 0.9


def test_a_collection_can_be_pinned_to_it(_fresh_pack: Path, tmp_path: Path) -> None:
    with facevault.open(tmp_path / "v", create=True) as vault:
        with pytest.raises(ModelError):
            vault.create_collection("c", model=LM68_PACK)
        _accept(_fresh_pack)
        vault.create_collection("c", model=LM68_PACK)
        entry = vault.audit_entries(1, action="collection.create")[0]["details"]["license_acceptance"]
        assert entry["accepted_by"] == "tester" and entry["license_id"] == "iBUG-300-W-non-commercial"
        assert entry["license_text_sha256"] == hashlib.sha256(LICENSE_TEXT.encode()).hexdigest()
        vault.add_subject("c", "aaron", purpose="test", consent_text="yes")
        out = vault.enroll("c", "aaron", [lfw("Tony_Blair", 1)])
        assert out[0].ok, out[0].reason
        hit = vault.search("c", lfw("Tony_Blair", 2), purpose="test")
        assert hit.faces[0].candidates[0].name == "aaron"


def test_a_collection_migrates_to_it_from_kept_crops(_fresh_pack: Path, tmp_path: Path) -> None:
    """`collection migrate` with real weights on both sides: five LFW people enrolled with the default
    pack move to the 68-point pack; each one's second photo still finds them, and the audit chain holds."""
    people = ["Tony_Blair", "Abdullah_Gul", "Adam_Sandler", "Adrien_Brody", "Abel_Pacheco"]
    with facevault.open(tmp_path / "v", create=True) as vault:
        vault.create_collection("c", keep_crops=True)
        for who in people:
            vault.add_subject("c", who, purpose="test", consent_text="yes")
            assert vault.enroll("c", who, [lfw(who, 1)])[0].ok
        before = {who: vault.search("c", lfw(who, 2), purpose="test").faces[0].candidates for who in people}
        assert all(c and c[0].name == who for who, c in before.items())
        with pytest.raises(ModelError):
            vault.migrate_collection("c", LM68_PACK)  # license not accepted yet: nothing changes
        assert vault.get_collection("c")["model_id"] == "dlib-resnet-v1"
        _accept(_fresh_pack)
        result = vault.migrate_collection("c", LM68_PACK, workers=2)  # the license holds in workers too
        assert result["samples"] == len(people) and result["to_model"] == LM68_PACK
        assert vault.get_collection("c")["model_id"] == LM68_PACK
        created, moved = (
            vault.audit_entries(1, action=a)[0]["details"]
            for a in ("collection.create", "collection.migrate")
        )
        assert "license_acceptance" not in created  # the default pack needs none
        assert moved["license_acceptance"]["license_id"] == "iBUG-300-W-non-commercial"
        for who in people:
            hit = vault.search("c", lfw(who, 2), purpose="test").faces[0]
            assert hit.candidates and hit.candidates[0].name == who
        assert vault.verify_audit().ok


def test_info_and_verify_know_the_builtin_packs(_fresh_pack: Path) -> None:
    """`models info` describes built-in packs (files with SHA-256, license, calibration); `verify` checks
    the 68-point pack's license record instead of reporting its folder as a broken pack."""
    runner = CliRunner()
    d = ["--models-dir", str(_fresh_pack)]
    info = json.loads(runner.invoke(models_app, ["info", "dlib-resnet-v1", "--json", *d]).output)
    assert info["detector"]["landmarks"] == 5 and info["license"]["commercial_use"] is True
    assert all(len(h) == 64 for h in info["files"].values()) and info["calibration"]["impostor_pairs"] > 10**6
    _accept(_fresh_pack)
    info = json.loads(runner.invoke(models_app, ["info", LM68_PACK, "--json", *d]).output)
    assert info["detector"]["landmarks"] == 68 and info["license"]["commercial_use"] is False
    assert info["license_record"]["license_text"] == LICENSE_TEXT
    res = runner.invoke(models_app, ["verify", "--json", *d])
    assert res.exit_code == 0 and json.loads(res.output)["packs"][LM68_PACK]["ok"] is True
    p = record_path(_fresh_pack)
    p.write_text(json.dumps({**json.loads(p.read_text()), "license_text": "edited"}), encoding="utf-8")
    res = runner.invoke(models_app, ["verify", "--json", *d])
    assert res.exit_code == 8 and json.loads(res.output)["packs"][LM68_PACK]["ok"] is False
