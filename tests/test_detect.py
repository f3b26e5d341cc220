"""Detection as a service (``facevault detect``, ``POST /api/v1/detect``): every face with box, landmarks,
score and quality, the enrollment gate's reasons, no identity, nothing stored, one audit entry."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import func, select
from typer.testing import CliRunner

from facevault.cli import app
from facevault.errors import InputError
from facevault.quality import FaceQuality, QualityGate
from facevault.service.detect import gate_reasons
from facevault.store import schema as t

from . import test_api_support as support
from .conftest import data_path, lfw
from .test_api_support import asgi_client, auth

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

runner = CliRunner()


def two_people() -> Path:
    return data_path("face_recognition_examples", "examples", "two_people.jpg")


def _stored(vault) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with vault.store.engine.connect() as conn:
        images = conn.execute(select(func.count()).select_from(t.images)).scalar_one()
        samples = conn.execute(select(func.count()).select_from(t.samples)).scalar_one()
    return int(images), int(samples)


def _big_and_tiny(tmp_path: Path) -> Path:
    """A canvas with one LFW face at full size and another shrunk until its eyes are ~15 px apart."""
    canvas = Image.new("RGB", (520, 300), (128, 128, 128))
    canvas.paste(Image.open(lfw("Tony_Blair", 1)), (10, 25))
    canvas.paste(Image.open(lfw("Hugo_Chavez", 1)).resize((100, 100), Image.LANCZOS), (360, 100))
    path = tmp_path / "big_and_tiny.jpg"
    canvas.save(path, quality=95)
    return path


def test_detect_finds_both_people_stores_nothing_and_audits_once(people_vault) -> None:
    vault = people_vault
    before_entries = len(vault.audit_entries(1000))
    before_rows = _stored(vault)
    res = vault.detect(str(two_people()))
    assert res.width == 1126 and res.height == 661 and res.detector == "dlib-mmod"
    assert len(res.faces) == 2
    boxes = sorted(f.box for f in res.faces)
    assert boxes[0][2] < boxes[1][0]  # side by side, not overlapping
    for f in res.faces:
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 < x2 <= res.width and 0 <= y1 < y2 <= res.height
        assert 80 < x2 - x1 < 300  # the two heads are ~150 px wide
        assert len(f.landmarks) == 5
        assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in f.landmarks)
        assert f.left_eye[0] < f.right_eye[0]
        assert f.nose[1] > max(f.left_eye[1], f.right_eye[1])  # upright faces: nose below the eyes
        assert f.detector_score > 0 and 0 < f.quality["overall"] <= 1
        assert f.quality["eye_distance"] > 40
        assert f.enrollable and f.reasons == [] and f.searchable
    d = res.to_dict()
    assert d["face_count"] == 2 and "drawn_jpeg" not in d
    assert not any(k in json.dumps(d) for k in ("embedding", "subject", "candidates"))  # no identity

    assert _stored(vault) == before_rows  # nothing stored
    entries = vault.audit_entries(1000)
    assert len(entries) == before_entries + 1
    entry = entries[0]
    assert entry.action == "detect" and entry.seq == res.audit_seq
    assert entry.probe_sha256 == res.probe_sha256 and entry.purpose == "detection"
    assert entry.details == {"outcome": "ok", "model_id": "dlib-resnet-v1", "faces": 2}
    assert vault.verify_audit().ok is True


def test_a_tiny_face_gets_its_reason_and_a_big_one_none(vault, tmp_path: Path) -> None:
    res = vault.detect(str(_big_and_tiny(tmp_path)), purpose="photo check")
    # the two pasted faces (the LFW crop also shows part of a neighbour at its left edge, which the
    # default detector finds too)
    pasted = [f for f in res.faces if f.box[0] >= 50]
    assert len(pasted) == 2
    big, tiny = sorted(pasted, key=lambda f: -f.quality["eye_distance"])
    assert big.enrollable and big.reasons == []
    assert tiny.quality["eye_distance"] < 24
    assert tiny.reasons == ["face_too_small"] and not tiny.enrollable
    assert tiny.searchable  # search looks at faces down to 10 px between the eyes
    assert tiny.box[0] >= 350  # where it was pasted
    assert vault.audit_entries(1)[0].purpose == "photo check"


def test_a_blurred_face_is_blurry(vault, tmp_path: Path) -> None:
    blurred = tmp_path / "blurred.jpg"
    Image.open(lfw("Tony_Blair", 1)).filter(ImageFilter.GaussianBlur(3)).save(blurred, quality=95)
    (face,) = vault.detect(str(blurred)).faces
    assert face.reasons == ["blurry"]


def test_gate_reasons_names_every_failure_in_the_gates_order() -> None:
    gate = QualityGate(min_eye_distance=24, min_sharpness=8, max_yaw=35, max_roll=30)
    q = FaceQuality(
        eye_distance=12, sharpness=3, brightness=120, contrast=40, yaw=50, pitch=0, roll=0,
        detector_score=1, overall=0.1,
    )  # fmt: skip
    assert gate_reasons(q, gate) == ["face_too_small", "extreme_pose", "blurry"]
    assert gate.rejection(q) == "face_too_small"  # the gate itself names the first only
    fine = FaceQuality(40, 50, 120, 40, 5, 0, -40, 1, 0.9)
    assert gate_reasons(fine, gate) == ["extreme_pose"]


def test_an_unreadable_photo_is_refused_and_audited(vault, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError):
        vault.detect(str(bad))
    entry = vault.audit_entries(1)[0]
    assert entry.action == "detect" and entry.details["outcome"] == "error"
    assert entry.details["error"] and "faces" not in entry.details


def test_cli_detect_json_and_draw(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    out = tmp_path / "drawn.jpg"
    result = runner.invoke(app, ["detect", str(two_people()), "--json", "--draw", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["face_count"] == 2 and len(res["faces"]) == 2
    assert set(res["faces"][0]) == {
        "face_index", "box", "landmarks", "left_eye", "right_eye", "nose", "detector_score", "quality",
        "enrollable", "reasons", "searchable",
    }  # fmt: skip
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(two_people()).convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = (int(v) for v in res["faces"][0]["box"])
    edge = drawn[y1 + 1, x1 + 10 : x2 - 10]  # the box's top edge: green, for an enrollable face
    assert edge[:, 1].mean() > 150 and edge[:, 0].mean() < 120
    inside = (slice(y1 + 20, y2 - 20), slice(x1 + 20, x2 - 20))
    assert np.abs(drawn[inside] - original[inside]).mean() < 12  # JPEG noise, plus the landmark dots

    text = runner.invoke(app, ["detect", str(two_people())])
    assert text.exit_code == 0 and "2 face(s)" in text.stdout and "enrollable" in text.stdout
    missing = runner.invoke(app, ["detect", str(tmp_path / "none.jpg"), "--json"])
    assert missing.exit_code == 3 and json.loads(missing.stdout)["error"]["code"] == "file_not_found"
    unknown = runner.invoke(app, ["detect", str(two_people()), "--model", "no-such-model", "--json"])
    assert unknown.exit_code == 9 and json.loads(unknown.stdout)["error"]["code"] == "model_unavailable"


@pytest.mark.anyio
async def test_api_detect_with_roles(api_app, role_keys, tmp_path: Path) -> None:
    vault = api_app.state.vault
    photo = two_people().read_bytes()
    async with asgi_client(api_app) as c:
        r = await c.post(
            "/api/v1/detect",
            files={"image": ("two.jpg", photo, "image/jpeg")},
            data={"purpose": "check before enrollment"},
            headers=auth(role_keys["enroller"]),
        )
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["face_count"] == 2 and res["request_id"].startswith("req_")
        assert {len(f["landmarks"]) for f in res["faces"]} == {5}
        entry = vault.audit_entries(1)[0]
        assert entry.action == "detect" and entry.role == "enroller" and entry.seq == res["audit_seq"]
        assert entry.purpose == "check before enrollment"

        tiny = _big_and_tiny(tmp_path).read_bytes()
        r = await c.post(
            "/api/v1/detect",
            files={"image": ("t.jpg", tiny, "image/jpeg")},
            headers=auth(role_keys["searcher"]),
        )
        pasted = [f for f in r.json()["faces"] if f["box"][0] >= 50]
        assert r.status_code == 200 and sorted(len(f["reasons"]) for f in pasted) == [0, 1]

        for role in ("reviewer", "auditor"):
            r = await c.post(
                "/api/v1/detect",
                files={"image": ("two.jpg", photo, "image/jpeg")},
                headers=auth(role_keys[role]),
            )
            assert r.status_code == 403, role
        r = await c.post("/api/v1/detect", files={"image": ("two.jpg", photo, "image/jpeg")})
        assert r.status_code == 401
        r = await c.post(
            "/api/v1/detect",
            json={"image_base64": "bm90IGFuIGltYWdl", "model": "no-such-model"},
            headers=auth(role_keys["searcher"]),
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_model"
        buf = io.BytesIO()
        Image.open(lfw("Tony_Blair", 2)).save(buf, format="PNG")  # one face only
        r = await c.post(
            "/api/v1/detect",
            json={"image_base64": base64.b64encode(buf.getvalue()).decode()},
            headers=auth(role_keys["admin"]),
        )
        assert r.status_code == 200 and r.json()["face_count"] == 1
    assert _stored(vault) == (0, 0)
