"""Accountability that holds under attack (issue 11, findings 8, 10, 11 and the names of 15): no
identification without an audit entry, bounded searches, two-person review by two principals, and one rule
for collection names on every edge."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facevault.cli import app
from facevault.errors import ConflictError, InputError
from facevault.service.review import local_principal

from . import test_api_support as support
from .conftest import jpeg_bytes, lfw
from .test_api_support import asgi_client, auth

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

runner = CliRunner()


def cli(*args: str | Path, code: int = 0) -> dict:
    result = runner.invoke(app, [*map(str, args), "--json"])
    assert result.exit_code == code, (result.exit_code, result.output)
    return json.loads(result.stdout)


def _searches(vault) -> list:  # type: ignore[no-untyped-def]
    return vault.audit_entries(100, action="search")


# ---- 8: an identity conflict names the other subject only to a role that may search, and audits it -------
def _two_of_one_face(astronaut: np.ndarray) -> tuple[bytes, bytes]:
    """Two different photos (bytes) of one face: the strict identity-conflict check matches them."""
    return jpeg_bytes(astronaut), jpeg_bytes(np.asarray(Image.fromarray(astronaut).resize((360, 318))))


def test_local_enrollment_conflict_is_named_and_audited_as_a_search(people_vault, astronaut) -> None:
    first, second = _two_of_one_face(astronaut)
    ids = {s.name: s.id for s in people_vault.list_subjects("people")}
    alice, bob = ids["Alice"], ids["Bob"]
    assert people_vault.enroll("people", "Alice", [("a.jpg", first)])[0].ok
    before = len(_searches(people_vault))
    out = people_vault.enroll("people", "Bob", [("b.jpg", second)])[0]
    assert out.reason == "identity_conflict"
    assert f"#{alice} (Alice)" in out.message  # the local operator may search: told who it is
    searches = _searches(people_vault)
    assert len(searches) == before + 1, "an identification without an audit entry"
    entry = searches[0]
    assert f"audit entry #{entry['seq']}" in out.message
    assert entry["purpose"] == f"enrollment of subject #{bob}: testing"
    assert entry["collection"] == "people" and entry["probe_sha256"] == out.image_sha256
    assert entry["details"]["input"] == "enrollment" and entry["details"]["outcome"] == "ok"
    [[[matched, similarity]]] = entry["details"]["candidates"]
    assert matched == alice and similarity >= entry["details"]["threshold"]
    assert people_vault.verify_audit().ok is True


@pytest.mark.anyio
async def test_enroller_key_is_not_told_who_the_face_belongs_to(api_app, role_keys, astronaut) -> None:
    vault = api_app.state.vault
    first, second = _two_of_one_face(astronaut)
    vault.create_collection("g")
    a = vault.add_subject("g", "Eileen Collins", purpose="badge", consent_text="signed (test)")["id"]
    b = vault.add_subject("g", "Somebody Else", purpose="badge", consent_text="signed (test)")["id"]
    assert vault.enroll("g", "Eileen Collins", [("a.jpg", first)])[0].ok
    before = len(_searches(vault))
    url = f"/api/v1/collections/g/subjects/{b}/samples"
    files = [("images", ("b.jpg", second, "image/jpeg"))]
    async with asgi_client(api_app) as c:
        r = await c.post(url, files=files, headers=auth(role_keys["enroller"]))
        assert r.status_code == 200, r.text
        [outcome] = r.json()["outcomes"]
        assert outcome["reason"] == "identity_conflict"
        # neither the name nor the subject id of the person the face belongs to
        assert "Eileen" not in r.text and f"#{a}" not in outcome["message"]
        assert "another subject" in outcome["message"]
        assert len(_searches(vault)) == before  # nobody was identified, so no search entry

        r = await c.post(url, files=files, headers=auth(role_keys["admin"]))
        [outcome] = r.json()["outcomes"]
    assert outcome["reason"] == "identity_conflict" and f"#{a} (Eileen Collins)" in outcome["message"]
    entry = _searches(vault)[0]
    assert len(_searches(vault)) == before + 1 and entry["role"] == "admin"
    assert entry["details"]["candidates"][0][0][0] == a and entry["purpose"].startswith(
        f"enrollment of subject #{b}"
    )


# ---- 10: the loosest threshold and the longest list a key below admin may ask for ---------------------
@pytest.fixture
def lfw_gallery(vault):  # type: ignore[no-untyped-def]
    """Collection "g": five LFW people, two photos each, enrolled locally."""
    vault.create_collection("g")
    for person in ("Tony_Blair", "Colin_Powell", "Jacques_Chirac", "Laura_Bush", "Andre_Agassi"):
        vault.add_subject("g", person.replace("_", " "), purpose="testing", consent_text="signed (test)")
        outcomes = vault.enroll("g", person.replace("_", " "), [lfw(person, 1), lfw(person, 2)])
        assert all(o.ok for o in outcomes), outcomes
    return vault


async def _search(c, key: str, **fields: object):  # type: ignore[no-untyped-def]
    data = {"purpose": "bounds test", **{k: str(v) for k, v in fields.items()}}
    files = {"image": ("probe.jpg", lfw("Hugo_Chavez", 1).read_bytes(), "image/jpeg")}
    return await c.post("/api/v1/collections/g/search", data=data, files=files, headers=auth(key))


@pytest.mark.anyio
async def test_searcher_cannot_list_the_gallery_with_a_loose_threshold_or_a_long_list(
    lfw_gallery, api_app, role_keys
) -> None:
    searcher, admin = role_keys["searcher"], role_keys["admin"]
    refused = {
        "threshold_too_loose": [{"threshold": -1}, {"threshold": 0.0}, {"fmr": 0.5}, {"fmr": 0.011}],
        "top_too_large": [{"top": 21}, {"top": 100}, {"top": 10_000}],
    }
    async with asgi_client(api_app) as c:
        for code, asks in refused.items():
            for ask in asks:
                r = await _search(c, searcher, **ask)
                assert r.status_code == 422 and r.json()["error"]["code"] == code, (ask, r.text)
                assert "Tony Blair" not in r.text
        entries = _searches(lfw_gallery)[:7]
        assert [e["details"]["error"] for e in reversed(entries)] == [
            *["threshold_too_loose"] * 4,
            *["top_too_large"] * 3,
        ]
        assert {e["role"] for e in entries} == {"searcher"} and {e["purpose"] for e in entries} == {
            "bounds test"
        }
        assert entries[-1]["details"]["threshold"] == -1 and entries[0]["details"]["top_k"] == 10_000

        # within the bounds the search runs; an admin may go beyond them
        ok = await _search(c, searcher, fmr=0.01, top=20)
        assert ok.status_code == 200, ok.text
        listing = await _search(c, admin, threshold=-1, top=100)
        assert listing.status_code == 200, listing.text
    names = {cand["name"] for face in listing.json()["faces"] for cand in face["candidates"]}
    assert len(names) == 5  # what a searcher could read out before: every name in the gallery


def test_limits_are_settings_and_bind_embedding_searches_too(lfw_gallery, monkeypatch) -> None:
    pixels = lfw_gallery.context.decode(lfw("Tony_Blair", 3)).pixels
    vec = lfw_gallery.pipeline("dlib-resnet-v1").analyze(pixels)[0].embedding
    searcher = lfw_gallery.acting_as("key:test0001", role="searcher")
    kw = {"model_id": "dlib-resnet-v1", "purpose": "embedding bounds"}
    with pytest.raises(InputError) as loose:
        searcher.search_embedding("g", vec, threshold=-1, **kw)
    assert loose.value.code == "threshold_too_loose" and loose.value.exit_code == 3
    with pytest.raises(InputError) as long:
        searcher.search_embedding("g", vec, top_k=50, **kw)
    assert long.value.code == "top_too_large"
    assert [e["details"]["error"] for e in _searches(lfw_gallery)[:2]] == [
        "top_too_large",
        "threshold_too_loose",
    ]
    assert _searches(lfw_gallery)[0]["details"]["input"] == "embedding"
    assert searcher.search_embedding("g", vec, **kw)[0].name == "Tony Blair"
    # the local operator has every right
    assert len(lfw_gallery.search_embedding("g", vec, threshold=-1, top_k=50, **kw)) == 5

    import facevault

    monkeypatch.setenv("FACEVAULT_SEARCH_MAX_TOP", "2")
    monkeypatch.setenv("FACEVAULT_SEARCH_LOOSEST_FMR", "1e-4")
    with facevault.open(str(lfw_gallery.settings.home)) as tight:
        strict = tight.acting_as("key:test0001", role="searcher")
        with pytest.raises(InputError) as top:
            strict.search("g", lfw("Tony_Blair", 3), purpose="p", top_k=3)
        assert top.value.code == "top_too_large" and top.value.details == {"top": 3, "max_top": 2}
        with pytest.raises(InputError) as fmr:
            strict.search("g", lfw("Tony_Blair", 3), purpose="p", top_k=2, fmr=1e-3)
        assert fmr.value.code == "threshold_too_loose"
        assert strict.search("g", lfw("Tony_Blair", 3), purpose="p", top_k=2, fmr=1e-4).threshold_fmr == 1e-4


# ---- 11: two confirmations need two principals; a typed name is only shown ----------------------------
def test_one_cli_operator_under_two_names_is_one_reviewer(lfw_gallery, monkeypatch) -> None:
    res = cli("search", "g", lfw("Tony_Blair", 3), "--purpose", "incident", "--case", "CASE-1")
    sid = res["faces"][0]["candidates"][0]["subject_id"]
    me = local_principal()
    first = cli("review", "CASE-1", "--candidate", sid, "--decision", "confirm", "--reviewer", "alice")
    assert first["state"] == "pending" and first["confirmed_by"] == [f"alice ({me})"]
    monkeypatch.setenv("USER", "bob")  # neither the typed name nor $USER makes another person
    twice = cli("review", "CASE-1", "--candidate", sid, "--decision", "confirm", "--reviewer", "bob", code=5)
    assert twice["error"]["code"] == "already_reviewed" and "alice" in twice["error"]["message"]
    case = cli("review", "CASE-1")["candidates"][0]
    assert case["state"] == "pending" and case["confirmed_by"] == [f"alice ({me})"]
    log = lfw_gallery.audit_entries(10, action="review")
    assert [e["details"]["reviewer"] for e in log] == [f"alice ({me})"]


def test_two_principals_confirm_and_each_is_shown_with_its_decision(lfw_gallery) -> None:
    res = lfw_gallery.search("g", lfw("Tony_Blair", 3), purpose="incident", case_id="CASE-2")
    sid = res.faces[0].candidates[0].subject_id
    ann = lfw_gallery.acting_as("key:aaaa1111", role="reviewer")
    ben = lfw_gallery.acting_as("key:bbbb2222", role="admin")
    assert ann.review("CASE-2", sid, "confirm", "Ann")["state"] == "pending"
    with pytest.raises(ConflictError) as again:
        ann.review("CASE-2", sid, "confirm", "Someone Else")
    assert again.value.code == "already_reviewed"
    done = ben.review("CASE-2", sid, "confirm", "Ben", note="same scar")
    assert done["state"] == "confirmed"
    assert done["confirmed_by"] == ["Ann (key:aaaa1111)", "Ben (key:bbbb2222)"]
    # the local operator is a third principal; a rejection by anyone marks the candidate rejected
    rejected = lfw_gallery.review("CASE-2", sid, "reject", "Carol")
    assert rejected["state"] == "rejected" and rejected["rejected_by"] == [f"Carol ({local_principal()})"]
    assert [e["actor"] for e in lfw_gallery.audit_entries(10, action="review")][1:] == [
        "key:bbbb2222",
        "key:aaaa1111",
    ]


# ---- 15: one rule for names, in the service, whichever edge they come from -----------------------------
REFUSED_NAMES = [
    "../x",
    "a/b",
    "/",
    "..",
    ".",
    "x" * 201,
    "x" * 10_000,
    "a\\b",
    "tab\there",
    "nul\x00",
    "zw\u200bsp",
    "  ",
]
ACCEPTED_NAMES = ["x" * 200, "Équipe A", "O'Brien & Co", "50% off", "what?", "#1", "a..b", "ع\u200cb", "名前"]


def test_refused_names_are_refused_by_the_python_api_and_the_cli(vault) -> None:
    for name in REFUSED_NAMES:
        with pytest.raises(InputError) as bad:
            vault.create_collection(name)
        assert bad.value.code == "invalid_name", name
        err = cli("collection", "create", name, code=3)["error"]
        assert err["code"] == "invalid_name", name
    assert vault.list_collections() == []


@pytest.mark.anyio
async def test_every_name_the_api_accepts_can_be_reached_over_the_api(api_app, role_keys) -> None:
    admin = auth(role_keys["admin"])
    async with asgi_client(api_app) as c:
        for name in REFUSED_NAMES:
            r = await c.post("/api/v1/collections", json={"name": name}, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name", (name, r.text)
        for name in ACCEPTED_NAMES:
            r = await c.post("/api/v1/collections", json={"name": name}, headers=admin)
            assert r.status_code == 201, (name, r.text)
            got = await c.get(f"/api/v1/collections/{quote(name, safe='')}", headers=admin)
            assert got.status_code == 200 and got.json()["name"] == name, (name, got.text)
            gone = await c.delete(f"/api/v1/collections/{quote(name, safe='')}", headers=admin)
            assert gone.status_code == 200, (name, gone.text)
        assert (await c.get("/api/v1/collections", headers=admin)).json() == []


def test_cli_and_api_share_one_length_limit(vault, tmp_path: Path) -> None:
    longest = "n" * 200
    assert cli("collection", "create", longest)["name"] == longest
    assert cli("collection", "create", longest + "n", code=3)["error"]["code"] == "invalid_name"
    assert [c["name"] for c in vault.list_collections()] == [longest]
