"""CompreFace's REST API on facevault, driven by the real ``compreface-sdk`` (0.6.0 from PyPI, installed
by the test itself) against a real server on 127.0.0.1, with real photos: LFW portraits and a group
photo (face_recognition's two_people.jpg: Barack Obama and Joe Biden)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from facevault.api import create_app
from facevault.api.compreface.shapes import image_id, sample_id_of, similarity

from .conftest import data_path, lfw
from .test_api_support import TEST_SETTINGS, asgi_client, live_server

pytestmark = pytest.mark.anyio
SDK = "compreface-sdk==0.6.0"
PURPOSE = "front door camera"
# Fields of CompreFace's demographic plugins: facevault never computes them.
DEMOGRAPHIC = {"age", "gender", "mask", "pose"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def compreface_sdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real SDK, installed from PyPI into a folder of this test session (not the project's venv).
    Its pin requests-toolbelt==0.9.1 cannot import under urllib3 2, so toolbelt 1.0.0 (the same
    MultipartEncoder) is installed next to it; the SDK's own code is used as published."""
    try:
        import compreface

        return compreface
    except ImportError:  # absent, or installed with its toolbelt pin: forget what was half imported
        for name in [m for m in sys.modules if m.split(".")[0] in ("compreface", "requests_toolbelt")]:
            del sys.modules[name]
    target = tmp_path_factory.mktemp("compreface-sdk")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    done = subprocess.run(
        [*cmd, SDK, "requests-toolbelt==1.0.0"], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.skip(f"could not install {SDK} from PyPI: {done.stderr.strip()[-300:]}")
    sys.path.insert(0, str(target))
    import compreface

    return compreface


def _walk_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _walk_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _walk_keys(v)}
    return set()


def _consented(vault: Any, collection: str, *names: str) -> None:
    for name in names:
        vault.add_subject(collection, name, purpose="door access", consent_text=f"{name} signed form (test)")


def _compat_key(vault: Any, service: str, **kw: Any) -> str:
    binding = {"collection": "home", "purpose": PURPOSE, **kw}
    return vault.create_compat_key(name=f"{service} test", protocol="compreface", service=service, **binding)[
        0
    ]


def test_the_real_sdk_against_a_real_server(vault, compreface_sdk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from compreface import CompreFace
    from compreface.client.subject_client import SubjectClient

    examples = data_path("face_recognition_examples", "examples")
    vault.create_collection("home")
    _consented(vault, "home", "Barack Obama", "Joe Biden", "Tony Blair")
    rec_key = _compat_key(vault, "recognition", case_id="CASE-7")
    det_key = _compat_key(vault, "detection")
    ver_key = _compat_key(vault, "verification")
    admin_key = _compat_key(vault, "recognition", roles="admin")
    answers: list[Any] = []

    def seen(answer: Any) -> Any:
        answers.append(answer)
        return answer

    app = create_app(vault, settings=TEST_SETTINGS)
    with live_server(app) as url:
        port = url.rsplit(":", 1)[1]
        cf = CompreFace("http://127.0.0.1", port)
        recognition = cf.init_face_recognition(rec_key)
        subjects, faces = recognition.get_subjects(), recognition.get_face_collection()

        # ---- subjects: created only with consent (the SDK's add sends the name alone) --------------
        refused = seen(subjects.add("Colin Powell"))
        assert refused["code"] == 100 and "consent" in refused["message"]
        made = seen(
            SubjectClient(rec_key, "http://127.0.0.1", port).post(
                {"subject": "Colin Powell", "consent_text": "signed form 12 (test)", "consent_by": "HR"}
            )
        )
        assert made["subject"] == "Colin Powell"
        listed = seen(subjects.list())
        assert set(listed["subjects"]) == {"Barack Obama", "Joe Biden", "Tony Blair", "Colin Powell"}
        assert seen(subjects.update("Colin Powell", "Colin L. Powell")) == {"updated": True}
        clash = seen(subjects.update("Colin L. Powell", "Tony Blair"))  # CompreFace would merge two people
        assert clash["code"] == 43
        assert seen(subjects.delete("Colin L. Powell"))["subject"] == "Colin L. Powell"

        # ---- faces: enrolled only into a consented subject --------------------------------------------
        obama = seen(faces.add(str(examples / "obama.jpg"), "Barack Obama"))
        biden = seen(faces.add(str(examples / "biden.jpg"), "Joe Biden"))
        blair = seen(faces.add(str(lfw("Tony_Blair", 1)), "Tony Blair"))
        seen(faces.add(lfw("Tony_Blair", 2).read_bytes(), "Tony Blair"))  # bytes, as the SDK allows
        assert {obama["subject"], biden["subject"], blair["subject"]} == {
            "Barack Obama",
            "Joe Biden",
            "Tony Blair",
        }
        no_consent = seen(faces.add(str(lfw("Colin_Powell", 1)), "Colin Powell"))
        assert no_consent["code"] == 100 and "consent" in no_consent["message"]
        page = seen(faces.list())
        assert page["total_elements"] == 4 and page["page_number"] == 0
        assert {f["image_id"] for f in page["faces"]} >= {
            obama["image_id"],
            biden["image_id"],
            blair["image_id"],
        }

        # ---- recognize a group photo ---------------------------------------------------------------------
        group = seen(
            recognition.recognize(str(examples / "two_people.jpg"), {"limit": 0, "prediction_count": 1})
        )
        names = sorted(r["subjects"][0]["subject"] for r in group["result"])
        assert names == ["Barack Obama", "Joe Biden"]
        left = min(group["result"], key=lambda r: r["box"]["x_min"])
        assert left["subjects"][0]["subject"] == "Barack Obama"  # Obama stands on the left
        assert all(r["subjects"][0]["similarity"] >= 0.6 for r in group["result"]), group
        blair_probe = seen(recognition.recognize(str(lfw("Tony_Blair", 6))))
        assert blair_probe["result"][0]["subjects"][0]["subject"] == "Tony Blair"
        stranger = seen(recognition.recognize(str(lfw("Colin_Powell", 2))))
        assert stranger["result"][0]["subjects"] == []  # below the threshold nobody is named
        nobody = seen(recognition.recognize(_blank(tmp_path)))
        assert nobody["code"] == 28

        # ---- verify against a stored face, and two photos ---------------------------------------------
        same = seen(faces.verify(str(lfw("Tony_Blair", 6)), blair["image_id"]))
        other = seen(faces.verify(str(lfw("Colin_Powell", 2)), blair["image_id"]))
        # 0.40 is facevault's 1:1 operating point (FMR 1e-3): the same person above it, someone else below
        assert same["result"][0]["similarity"] >= 0.4 > other["result"][0]["similarity"], (same, other)
        verification = cf.init_face_verification(ver_key)
        pair = seen(verification.verify(str(lfw("Tony_Blair", 1)), str(lfw("Tony_Blair", 6))))
        cross = seen(verification.verify(str(lfw("Tony_Blair", 1)), str(examples / "two_people.jpg")))
        assert pair["result"][0]["face_matches"][0]["similarity"] >= 0.4, pair
        assert len(cross["result"][0]["face_matches"]) == 2
        assert max(m["similarity"] for m in cross["result"][0]["face_matches"]) < 0.4

        # ---- detect, with every plugin asked for ----------------------------------------------------
        detection = cf.init_face_detection(det_key)
        plugins = {"face_plugins": "landmarks,calculator,age,gender,mask", "status": "true"}
        found = seen(detection.detect(str(examples / "two_people.jpg"), plugins))
        assert len(found["result"]) == 2
        assert all(len(f["landmarks"]) >= 5 and len(f["embedding"]) == 128 for f in found["result"])
        assert found["plugins_versions"]["calculator"].startswith("facevault.")
        blair_vec = seen(detection.detect(str(lfw("Tony_Blair", 6)), {"face_plugins": "calculator"}))[
            "result"
        ][0]["embedding"]
        powell_vec = seen(detection.detect(str(lfw("Colin_Powell", 2)), {"face_plugins": "calculator"}))[
            "result"
        ][0]["embedding"]

        # ---- the embedding calls (CompreFace 1.2; the SDK 0.6 has no methods for them) -------------------
        def post(path: str, key: str, body: Any) -> Any:
            return seen(
                requests.post(f"{url}{path}", json=body, headers={"x-api-key": key}, timeout=60).json()
            )

        by_vec = post(
            "/api/v1/recognition/embeddings/recognize?prediction_count=2",
            rec_key,
            {"embeddings": [blair_vec, powell_vec]},
        )
        assert by_vec["result"][0]["similarities"][0]["subject"] == "Tony Blair"
        assert by_vec["result"][1]["similarities"] == []
        vs_face = post(
            f"/api/v1/recognition/embeddings/faces/{blair['image_id']}/verify",
            rec_key,
            {"embeddings": [blair_vec, powell_vec]},
        )
        assert vs_face["result"][0]["similarity"] >= 0.4 > vs_face["result"][1]["similarity"], vs_face
        vs_vec = post(
            "/api/v1/verification/embeddings/verify",
            ver_key,
            {"source": blair_vec, "targets": [blair_vec, powell_vec]},
        )
        assert vs_vec["result"][0]["facevault"]["score"] == pytest.approx(1.0, abs=1e-4)
        assert vs_vec["result"][0]["similarity"] >= 0.6 and vs_vec["result"][1]["similarity"] < 0.4
        wrong_dim = post(
            "/api/v1/verification/embeddings/verify", ver_key, {"source": [0.1] * 5, "targets": [[0.1] * 5]}
        )
        assert wrong_dim["code"] == 36

        # ---- delete faces, subjects; wiping needs an admin key -------------------------------------------
        gone = seen(faces.delete(obama["image_id"]))
        assert gone == {"image_id": obama["image_id"], "subject": "Barack Obama"}
        assert seen(faces.delete_all("Tony Blair")) == {"deleted": 2}
        assert "Tony Blair" in seen(subjects.list())["subjects"]  # the consented subject stays
        assert seen(subjects.delete_all())["code"] == 101
        admin = cf.init_face_recognition(admin_key).get_subjects()
        assert seen(admin.delete_all()) == {"deleted": 3}
        assert seen(subjects.list()) == {"subjects": []}

    # ---- every answer was JSON the SDK parsed; none has a demographic field -----------------------------
    assert not DEMOGRAPHIC & _walk_keys(answers)
    # ---- every search and comparison is audited under the key's purpose, with the key as actor ---------
    prefixes = {k.split("_")[1] for k in (rec_key, det_key, ver_key)}
    entries = vault.audit_entries(limit=1000)
    matching = [e for e in entries if e["action"] in ("search", "verify")]
    assert len(matching) >= 10
    for e in matching:
        assert e["purpose"] == PURPOSE and e["actor"].split(":")[1] in prefixes, e
    assert all(e["case_id"] == "CASE-7" for e in matching if e["actor"] == f"key:{rec_key.split('_')[1]}")
    erasures = [e for e in entries if e["action"] in ("samples.erase", "subject.erase")]
    assert (
        sum(len(e["details"].get("sample_ids", [])) for e in erasures if e["action"] == "samples.erase") == 3
    )
    assert vault.verify_audit().ok


def _blank(tmp_path: Path) -> str:
    from PIL import Image

    path = tmp_path / "wall.jpg"
    Image.new("RGB", (200, 200), (180, 170, 160)).save(path)
    return str(path)


# ---- keys and their binding ------------------------------------------------------------------------------
async def test_compat_keys_and_native_keys_do_not_mix(vault) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("home")
    app = create_app(vault, settings=TEST_SETTINGS)
    native = vault.create_api_key("admin", "native")[0]
    detection = _compat_key(vault, "detection")
    recognition = _compat_key(vault, "recognition")
    async with asgi_client(app) as c:
        r = await c.get("/api/v1/recognition/subjects", headers={"x-api-key": native})
        assert r.status_code == 401 and r.json()["code"] == 102 and "message" in r.json()
        r = await c.get("/api/v1/recognition/subjects")
        assert r.status_code == 401 and r.json()["code"] == 20
        r = await c.get("/api/v1/recognition/subjects", headers={"x-api-key": detection})
        assert r.status_code == 403 and "detection key" in r.json()["message"]
        r = await c.get("/api/v1/me", headers={"X-API-Key": recognition})
        assert r.status_code == 401  # a compat key has no powers on facevault's own API
        r = await c.get("/api/v1/recognition/subjects", headers={"x-api-key": recognition})
        assert r.json() == {"subjects": []}
        r = await c.get("/api/v1/recognition/faces?&page=x", headers={"x-api-key": recognition})
        assert r.status_code == 400 and r.json()["code"] == 26
    vault.delete_collection("home")
    async with asgi_client(app) as c:
        r = await c.get("/api/v1/recognition/subjects", headers={"x-api-key": recognition})
        assert r.status_code == 404 and r.json()["code"] == 10  # bound by id: a new "home" is not it
    spec = app.openapi()
    assert not any("recognition" in p for p in spec["paths"])  # CompreFace's routes are documented in API.md


def test_keys_create_compat_on_the_cli(vault) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from facevault.cli.server import keys_app

    vault.create_collection("home")
    home = str(vault.settings.home)
    runner = CliRunner()
    args = ["create", "--compat", "compreface", "--service", "recognition", "--collection", "home"]
    made = runner.invoke(
        keys_app, [*args, "--name", "dt", "--purpose", PURPOSE, "--case", "C-1", "--home", home, "--json"]
    )
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["compat"] == {
        "protocol": "compreface",
        "service": "recognition",
        "collection": "home",
        "roles": ["enroller", "searcher"],
        "purpose": PURPOSE,
        "case_id": "C-1",
    }
    assert vault.authenticate_compat_key(record["key"]).purpose == PURPOSE
    no_purpose = runner.invoke(keys_app, [*args, "--name", "dt", "--home", home])
    assert no_purpose.exit_code == 3 and "purpose" in no_purpose.output
    bad_role = runner.invoke(
        keys_app, [*args, "--name", "x", "--purpose", "p", "--role", "auditor", "--home", home]
    )
    assert bad_role.exit_code == 3 and "invalid_role" in bad_role.output
    mixed = runner.invoke(
        keys_app, ["create", "--role", "admin", "--name", "x", "--purpose", "p", "--home", home]
    )
    assert mixed.exit_code == 3
    bound = [e for e in vault.audit_entries(limit=20) if e["action"] == "apikey.compat"]
    assert bound[0]["purpose"] == PURPOSE and bound[0]["collection"] == "home"


# ---- the similarity scale and image ids ------------------------------------------------------------------
def test_similarity_is_monotonic_in_the_false_match_rate_with_fixed_anchors() -> None:
    assert similarity(1e-3) == pytest.approx(0.4)
    assert similarity(1e-4) == pytest.approx(0.5)
    assert similarity(1e-5) == pytest.approx(0.6)
    assert similarity(1e-9) == 1.0 and similarity(1e-12) == 1.0 and similarity(0.0) == 1.0
    rates = [10 ** (-k / 4) for k in range(0, 41)]
    values = [similarity(f) for f in rates]
    assert values == sorted(values) and values[0] == pytest.approx(0.1)
    assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in values)


def test_image_ids_are_uuids_that_name_one_sample() -> None:
    for sid in (1, 42, 2**40 + 7):
        text = image_id(sid)
        assert len(text) == 36 and text.count("-") == 4
        assert sample_id_of(text) == sid == sample_id_of(str(sid))
    with pytest.raises(Exception, match="no face with image id"):
        sample_id_of("6b135f5b-a365-4522-b1f1-4c9ac2dd0728")


def test_a_live_answer_is_compreface_json(vault) -> None:  # type: ignore[no-untyped-def]
    """Over a real socket: an empty subject and a subject without consent are refused in CompreFace's
    shape, before the photo is even decoded."""
    vault.create_collection("home")
    key = _compat_key(vault, "recognition")
    with live_server(create_app(vault, settings=TEST_SETTINGS)) as url:
        r = httpx.post(
            f"{url}/api/v1/recognition/faces?subject=",
            headers={"x-api-key": key},
            files={"file": ("a.jpg", b"x")},
        )
        assert r.status_code == 400 and r.json()["code"] == 33
        r = httpx.post(
            f"{url}/api/v1/recognition/faces?subject=Ann",
            headers={"x-api-key": key},
            files={"file": ("a.jpg", b"not an image")},
        )
        assert r.status_code == 403 and r.json()["facevault_code"] == "consent_required"


@pytest.mark.parametrize("value", ["²", "٣", "1" * 19, "x"])
def test_an_image_id_that_is_no_number_is_not_found_not_a_crash(value: str) -> None:
    """``str.isdigit`` takes ``²`` and other digits ``int`` refuses: such an image id is a 404."""
    from facevault.api.compreface.shapes import CompatError, sample_id_of

    with pytest.raises(CompatError):
        sample_id_of(value)
