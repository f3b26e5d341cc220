"""Double Take's three calls to CompreFace, replayed with its exact query strings against a real server
on 127.0.0.1 (recognize with det_prob_threshold=0.8, train = add a face by subject, untrain = delete a
subject's faces), and its answers read the way Double Take reads them: ``code == 28`` is no face,
``result[].subjects[0].similarity`` x 100 against its cut-offs (match from 60, a name from 40), the box
as top/left/width/height."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from facevault.api import create_app

from .conftest import data_path, lfw
from .test_api_support import TEST_SETTINGS, live_server

MATCH, UNKNOWN = 60, 40  # Double Take's default confidence cut-offs
PURPOSE = "frigate: front door"


def normalize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What Double Take makes of a CompreFace answer (its compreface detector's normalize)."""
    if data.get("code") == 28:
        return []
    out = []
    for obj in data["result"]:
        face = obj["subjects"][0] if obj["subjects"] else None
        confidence = round(face["similarity"] * 100, 2) if face else 0
        out.append(
            {
                "name": face["subject"].lower() if face and confidence >= UNKNOWN else "unknown",
                "confidence": confidence,
                "match": confidence >= MATCH,
                "box": {
                    "top": obj["box"]["y_min"],
                    "left": obj["box"]["x_min"],
                    "width": obj["box"]["x_max"] - obj["box"]["x_min"],
                    "height": obj["box"]["y_max"] - obj["box"]["y_min"],
                },
            }
        )
    return out


def test_double_take_train_recognize_untrain(vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = data_path("face_recognition_examples", "examples")
    vault.create_collection("frigate")
    for name in ("Barack Obama", "Joe Biden"):
        vault.add_subject("frigate", name, purpose="home cameras", consent_text=f"{name} agreed (test)")
    key, _ = vault.create_compat_key(
        name="double-take",
        protocol="compreface",
        service="recognition",
        collection="frigate",
        purpose=PURPOSE,
    )
    blank = tmp_path / "empty-porch.jpg"
    Image.new("RGB", (320, 240), (90, 110, 95)).save(blank)
    headers = {"x-api-key": key}
    with (
        live_server(create_app(vault, settings=TEST_SETTINGS)) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):

        def train(name: str, path: Path) -> httpx.Response:  # axios: params {subject}, form field "file"
            return c.post(
                "/api/v1/recognition/faces",
                params={"subject": name},
                files={"file": (path.name, path.read_bytes())},
                headers=headers,
            )

        def recognize(path: Path) -> httpx.Response:  # params {det_prob_threshold: 0.8}
            return c.post(
                "/api/v1/recognition/recognize?det_prob_threshold=0.8",
                files={"file": (path.name, path.read_bytes())},
                headers=headers,
            )

        def untrain(name: str) -> httpx.Response:
            return c.delete("/api/v1/recognition/faces", params={"subject": name}, headers=headers)

        for name, photo in (("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")):
            r = train(name, examples / photo)
            assert r.status_code == 201 and r.json()["subject"] == name, r.text
        refused = train("Colin Powell", lfw("Colin_Powell", 1))  # no consent record: never trained
        assert refused.status_code == 403 and refused.json()["code"] == 100

        seen = normalize(recognize(examples / "two_people.jpg").json())
        assert sorted(f["name"] for f in seen) == ["barack obama", "joe biden"]
        assert all(f["match"] and f["box"]["width"] > 50 and f["box"]["height"] > 50 for f in seen), seen
        porch = recognize(blank)
        assert porch.status_code == 400 and normalize(porch.json()) == []  # code 28: nobody there
        stranger = normalize(recognize(lfw("Colin_Powell", 2)).json())
        assert stranger == [{**stranger[0], "name": "unknown", "confidence": 0, "match": False}]

        gone = untrain("Barack Obama")
        assert gone.status_code == 200 and gone.json() == {"deleted": 1}
        after = normalize(recognize(examples / "two_people.jpg").json())
        assert sorted(f["name"] for f in after) == ["joe biden", "unknown"]
        # the subject and its consent stay: Double Take's next training of the name is accepted
        assert train("Barack Obama", examples / "obama2.jpg").status_code == 201
        again = normalize(recognize(examples / "two_people.jpg").json())
        assert sorted(f["name"] for f in again) == ["barack obama", "joe biden"]

    searches = [e for e in vault.audit_entries(limit=200) if e["action"] == "search"]
    assert len(searches) == 5
    assert all(e["purpose"] == PURPOSE and e["actor"] == f"key:{key.split('_')[1]}" for e in searches)
    assert {e["details"]["outcome"] for e in searches} == {"ok", "no_face"}
    erased = [e for e in vault.audit_entries(limit=200) if e["action"] == "samples.erase"]
    assert len(erased) == 1 and len(erased[0]["details"]["sample_ids"]) == 1
