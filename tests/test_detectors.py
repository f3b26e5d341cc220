"""A collection on a dlib pack can find its faces with another detector (``collection create --detector``):
boxes from that detector, landmarks and chips from the pack, so vectors stay comparable across detectors.
A pack that aligns on five points refuses detectors that do not give them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facevault.cli import app
from facevault.config import load_settings
from facevault.errors import ConfigError
from facevault.models.detectors import BoxesThenLandmarks, available_detectors, with_detector
from facevault.models.dlib.mmod import DlibMmodDetector
from facevault.models.dlib.models import DlibHogDetector
from facevault.models.registry import get_pack
from facevault.pipeline import Pipeline

from .conftest import lfw

MODELS = Path(os.environ.get("FACEVAULT_TEST_MODELS", "../shared/models"))
YUNET = MODELS / "face_detection_yunet_2023mar.onnx"
runner = CliRunner()


def fv(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.stdout


def install_yunet(models_root: Path, tmp_path: Path) -> None:
    if not YUNET.is_file():
        pytest.skip(f"real YuNet weights not found in {MODELS} (FACEVAULT_TEST_MODELS)")
    from facevault.models.packs import install_pack

    src = tmp_path / "yunet-src"
    src.mkdir()
    shutil.copy(YUNET, src / YUNET.name)
    install_pack(src, name="yunet", root=models_root)


def test_mmod_is_used_as_it_is_and_a_five_point_detector_gets_dlib_landmarks(tmp_path: Path) -> None:
    pack = get_pack("dlib-resnet-v1")
    assert with_detector(pack, None, tmp_path) is pack
    assert with_detector(pack, "dlib-mmod", tmp_path) is pack  # the pack's own
    assert isinstance(pack.detector, DlibMmodDetector)
    hog = with_detector(pack, "dlib-hog", tmp_path)
    assert type(hog.detector) is DlibHogDetector and hog.embedder is pack.embedder
    with pytest.raises(ConfigError, match="not usable"):
        with_detector(pack, "no-such-detector", tmp_path)
    install_yunet(tmp_path, tmp_path)
    names = [d.name for d in available_detectors(tmp_path)]
    assert names[:2] == ["dlib-hog", "dlib-mmod"] and "yunet" in names
    yunet = with_detector(pack, "yunet", tmp_path)
    assert isinstance(yunet.detector, BoxesThenLandmarks)


def test_yunet_boxes_give_dlib_chips_whose_vectors_match_the_hog_ones(tmp_path: Path) -> None:
    """The same face through YuNet boxes + dlib landmarks and through dlib's own HOG: close vectors
    (well above any threshold), so a collection can change detector without re-enrolling."""
    install_yunet(tmp_path / "vault" / "models", tmp_path)
    settings = load_settings(tmp_path / "vault")
    from facevault import imaging

    hog = Pipeline.for_model("dlib-resnet-v1", settings)
    yunet = Pipeline.for_model("dlib-resnet-v1", settings, "yunet")
    sims = []
    for person, n in (("Tony_Blair", 1), ("Hugo_Chavez", 2), ("Colin_Powell", 3), ("Amelia_Vega", 1)):
        px = imaging.load_image(lfw(person, n)).pixels
        a, b = hog.analyze(px), yunet.analyze(px)
        assert a and b
        assert b[0].face.landmarks.shape == (5, 2)  # dlib's five points, not YuNet's own
        sims.append(float(np.dot(a[0].embedding, b[0].embedding)))
    assert min(sims) > 0.97, sims


def test_collection_create_and_set_detector(tmp_path: Path) -> None:
    fv("init")
    bad = runner.invoke(app, ["collection", "create", "bad", "--detector", "nope", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "config_error"
    out = json.loads(fv("collection", "create", "g", "--detector", "dlib-hog", "--json"))
    assert out["detector"] == "dlib-hog"
    fv("subject", "add", "g", "--name", "Tony Blair", "--purpose", "testing", "--consent-text", "signed")
    fv("enroll", "g", "Tony Blair", lfw("Tony_Blair", 1), lfw("Tony_Blair", 2))
    found = json.loads(fv("search", "g", lfw("Tony_Blair", 3), "--purpose", "check", "--json"))
    assert found["faces"][0]["candidates"][0]["name"] == "Tony Blair"
    listed = json.loads(fv("collection", "list", "--json"))
    assert listed[0]["detector"] == "dlib-hog"
    changed = json.loads(fv("collection", "set", "g", "--detector", "own", "--json"))
    assert changed["detector"] == "dlib-mmod"
    assert json.loads(fv("collection", "list", "--json"))[0]["detector"] is None
    again = json.loads(fv("search", "g", lfw("Tony_Blair", 3), "--purpose", "check", "--json"))
    assert again["faces"][0]["candidates"][0]["name"] == "Tony Blair"  # the same vectors, another detector
    actions = [e["action"] for e in json.loads(fv("audit", "list", "--limit", "50", "--json"))]
    assert "collection.detector" in actions
    detected = json.loads(fv("detect", lfw("Tony_Blair", 3), "--detector", "dlib-hog", "--json"))
    assert detected["detector"] == "dlib-hog" and detected["faces"]


def test_doctor_reports_each_collections_detector_and_one_that_went_missing(tmp_path: Path) -> None:
    install_yunet(tmp_path / "vault" / "models", tmp_path)
    import facevault

    v = facevault.open(str(tmp_path / "vault"), create=True)
    try:
        v.create_collection("own")
        v.create_collection("y", detector="yunet")
        report = {c["collection"]: c for c in v.doctor().collections}
        assert report["own"]["detector"] == "dlib-mmod" and report["y"]["detector"] == "yunet"
        assert report["y"]["problems"] == []
        shutil.rmtree(tmp_path / "vault" / "models" / "yunet")
    finally:
        v.close()
    from facevault.models import detectors

    detectors._named.cache_clear()  # a new process would not find it either
    v = facevault.open(str(tmp_path / "vault"))
    try:
        doc = v.doctor(repair=True)
        y = next(c for c in doc.collections if c["collection"] == "y")
        assert not doc.ok and y["repaired"] is False
        assert any("yunet" in p and "--detector own" in p for p in y["problems"])
    finally:
        v.close()
