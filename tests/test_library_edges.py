"""Photo libraries through the CLI and the REST API (with roles), on real LFW photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facevault.api import create_app

from . import test_api_support as support
from .conftest import lfw, run_cli
from .test_api_support import TEST_SETTINGS, asgi_client, auth

anyio_backend = support.anyio_backend


def _photos(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for i in (1, 2, 3):
        shutil.copy(lfw("Colin_Powell", i), folder / f"cp{i}.jpg")
    shutil.copy(lfw("Tony_Blair", 1), folder / "tb1.jpg")
    return folder


@pytest.mark.slow
def test_cli_create_add_people_name_search(tmp_path: Path) -> None:
    home = str(tmp_path / "vault")
    assert run_cli(home, "init").returncode == 0
    made = run_cli(
        home, "library", "create", "fam", "--purpose", "family album", "--basis", "household", "--json"
    )
    assert made.returncode == 0, made.stderr
    folder = _photos(tmp_path)
    added = run_cli(home, "library", "add", "fam", str(folder), "--workers", "1", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["added"] == 4
    people = json.loads(run_cli(home, "library", "people", "fam", "--json").stdout)
    top = people[0]
    assert top["faces"] == 3 and top["photos"] == 3  # Powell's three photos are one person
    refused = run_cli(
        home, "library", "person", "name", "fam", str(top["person"]), "--name", "CP", "--purpose", "p"
    )
    assert refused.returncode != 0 and "consent" in refused.stderr
    named = run_cli(
        home, "library", "person", "name", "fam", str(top["person"]), "--name", "CP", "--purpose", "p",
        "--consent-text", "yes",
    )  # fmt: skip
    assert named.returncode == 0, named.stderr
    found = run_cli(
        home, "library", "search", "fam", str(lfw("Colin_Powell", 9)), "--purpose", "album", "--json"
    )
    assert found.returncode == 0, found.stderr
    face = json.loads(found.stdout)["faces"][0]
    assert face["person_label"] == "CP" and face["photos"] == 3


@pytest.mark.anyio
async def test_api_roles_add_browse_name_search(vault, tmp_path: Path) -> None:
    app = create_app(vault, settings=TEST_SETTINGS)
    keys = {r: vault.create_api_key(r, f"{r} key")[0] for r in ("admin", "enroller", "searcher", "auditor")}
    folder = _photos(tmp_path)
    async with asgi_client(app) as c:
        body = {"name": "fam", "purpose": "family album", "basis": "household"}
        assert (
            await c.post("/api/v1/libraries", json=body, headers=auth(keys["enroller"]))
        ).status_code == 403
        assert (await c.post("/api/v1/libraries", json=body, headers=auth(keys["admin"]))).status_code == 201
        add = {"paths": [str(folder)]}
        assert (
            await c.post("/api/v1/libraries/fam/photos", json=add, headers=auth(keys["searcher"]))
        ).status_code == 403
        done = await c.post("/api/v1/libraries/fam/photos", json=add, headers=auth(keys["enroller"]))
        assert done.status_code == 200 and done.json()["added"] == 4
        assert (await c.get("/api/v1/libraries/fam/people", headers=auth(keys["auditor"]))).status_code == 403
        people = (await c.get("/api/v1/libraries/fam/people", headers=auth(keys["searcher"]))).json()
        person = people[0]["person"]
        shown = (await c.get(f"/api/v1/libraries/fam/people/{person}", headers=auth(keys["searcher"]))).json()
        assert len(shown["faces_list"]) == 3
        naming = {"name": "CP", "purpose": "album", "consent_text": "signed"}
        url = f"/api/v1/libraries/fam/people/{person}/name"
        assert (await c.post(url, json=naming, headers=auth(keys["searcher"]))).status_code == 403
        assert (await c.post(url, json={"name": "CP"}, headers=auth(keys["enroller"]))).status_code == 422
        assert (await c.post(url, json=naming, headers=auth(keys["enroller"]))).status_code == 200
        probe = {"image": ("p.jpg", lfw("Colin_Powell", 9).read_bytes(), "image/jpeg")}
        search = "/api/v1/libraries/fam/search"
        denied = await c.post(search, files=probe, data={"purpose": "album"}, headers=auth(keys["enroller"]))
        assert denied.status_code == 403
        found = await c.post(search, files=probe, data={"purpose": "album"}, headers=auth(keys["searcher"]))
        assert found.status_code == 200, found.text
        assert found.json()["faces"][0]["person_label"] == "CP"
    entry = vault.audit_entries(1, action="library.search")[0]
    assert entry["purpose"] == "album" and entry["role"] == "searcher"
