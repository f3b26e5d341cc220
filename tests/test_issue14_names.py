"""Issue 14, the remaining items: uploaded file names kept with HTTP-enrolled photos (schema revision
0008) and erased with them; ``facevault enroll --anyway``; the faces of a group search left to right;
audit entries with the names of keys and subjects (for the roles that may read them), paged; the
detectors a new collection can use."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from facevault.cli import EXIT_PARTIAL, app
from facevault.store import Store
from facevault.store import schema as t
from facevault.store.schema import SCHEMA_VERSION

from . import test_api_support as support
from .conftest import data_path, lfw
from .test_api_support import asgi_client, auth, photo

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

EXAMPLES = ("face_recognition_examples", "examples", "knn_examples")
GROUP = (*EXAMPLES, "test", "obama_and_biden.jpg")  # three faces; the detector finds them out of order


def _files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and "keys" not in p.parts]


# ---- 1. schema revision 0008 -----------------------------------------------------------------------
def test_revision_0008_adds_original_name_to_images_of_an_older_vault(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    assert SCHEMA_VERSION >= 8
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(t.__file__).parent / "migrations"))
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")
            conn.execute(
                text(
                    "INSERT INTO collections (id, name, model_id, dim, created_at, retention_days, "
                    "keep_crops) VALUES (1, 'c', 'm', 4, CURRENT_TIMESTAMP, 30, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO images (id, collection_id, sha256, source, width, height, created_at) "
                    "VALUES (1, 1, 'ab', '/photos/c1/ab', 1, 1, CURRENT_TIMESTAMP)"
                )
            )
        assert "original_name" not in {c["name"] for c in inspect(store.engine).get_columns("images")}
        store.create_schema()
        assert store.schema_revision() == f"{SCHEMA_VERSION:04d}"
        with store.engine.connect() as conn:
            row = conn.execute(select(t.images)).mappings().one()
        assert (row["source"], row["original_name"]) == ("/photos/c1/ab", None)  # kept, and no name
        with store.engine.begin() as conn:  # and back: 0007 has no such column
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
        assert "original_name" not in {c["name"] for c in inspect(store.engine).get_columns("images")}
    finally:
        store.close()


# ---- 1. uploaded file names -----------------------------------------------------------------------
@pytest.mark.anyio
async def test_http_enrolled_photos_keep_their_file_names_until_erasure(api_app, role_keys) -> None:
    vault = api_app.state.vault
    enr = auth(role_keys["enroller"])
    name = "Kate holiday 2019 (beach).jpg"
    async with asgi_client(api_app) as c:
        await c.post("/api/v1/collections", json={"name": "g"}, headers=auth(role_keys["admin"]))
        r = await c.post(
            "/api/v1/collections/g/subjects",
            json={"name": "Kate", "purpose": "testing", "consent_text": "signed (test)"},
            headers=enr,
        )
        sid = r.json()["id"]
        files = [
            (
                "images",
                (f"C:\\Users\\kate\\Pictures\\{name}", lfw("Colin_Powell", 1).read_bytes(), "image/jpeg"),
            ),
            ("images", ("../../etc/no face?.jpg", b"not an image at all", "image/jpeg")),
        ]
        r = await c.post(f"/api/v1/collections/g/subjects/{sid}/samples", files=files, headers=enr)
        assert r.status_code == 200, r.text
        ok, bad = r.json()["outcomes"]
        assert (ok["status"], ok["original_name"], ok["image"]) == ("enrolled", name, name)
        assert bad["status"] == "rejected" and bad["original_name"] == "no face_.jpg"  # sanitised
        assert bad["message"].startswith("no face_.jpg: ") and "/" not in bad["message"]

        [sample] = (await c.get(f"/api/v1/collections/g/subjects/{sid}", headers=enr)).json()["samples"]
        assert sample["sample_id"] == ok["sample_id"] and sample["original_name"] == name
        assert name not in sample["image"]  # the source is the server's copy, named by its hash
        with vault.store.begin() as conn:
            assert conn.execute(select(t.images.c.original_name)).scalars().all() == [name]
        # the Python API (and the CLI's `subject show`) lists the same name
        assert [x["original_name"] for x in vault.get_subject("g", sid)["samples"]] == [name]

        # a file name can be personal data: erasure leaves no trace of it in any file of the vault
        needle = b"Kate holiday 2019"
        assert any(needle in p.read_bytes() for p in _files(vault.settings.home))
        r = await c.delete(f"/api/v1/collections/g/subjects/{sid}", headers=enr)
        assert r.status_code == 200, r.text
    with vault.store.begin() as conn:
        assert conn.execute(select(t.images)).all() == []
    assert [p.name for p in _files(vault.settings.home) if needle in p.read_bytes()] == []


def test_photos_enrolled_from_paths_have_no_original_name(people_vault) -> None:
    [out] = people_vault.enroll("people", "Alice", [lfw("Colin_Powell", 2)])
    assert out.ok and out.original_name is None
    [sample] = people_vault.get_subject("people", "Alice")["samples"]
    assert sample["image"].endswith("Colin_Powell_0002.jpg")


# ---- 2. enroll --anyway -----------------------------------------------------------------------------
def test_cli_enroll_warns_of_a_resemblance_and_enrolls_only_with_anyway(vault) -> None:
    """Tony Blair 50 resembles Tony Blair (0.954: below the strict conflict threshold, above the 1:N
    one): the CLI names him, refuses that photo (exit 10) and says how to enroll it anyway."""
    runner = CliRunner()
    home = str(vault.settings.home)
    vault.create_collection("g")
    for who in ("Tony Blair", "Colin Powell"):
        vault.add_subject("g", who, purpose="testing", consent_text="signed (test)")
    assert all(o.ok for o in vault.enroll("g", "Tony Blair", [lfw("Tony_Blair", 1), lfw("Tony_Blair", 2)]))
    vault.close()
    wrong, right = str(lfw("Tony_Blair", 50)), str(lfw("Colin_Powell", 1))

    res = runner.invoke(app, ["enroll", "g", "Colin Powell", wrong, right, "--home", home])
    assert res.exit_code == EXIT_PARTIAL, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("WARNING   ") and "resembles subject #1 (Tony Blair)" in lines[0]
    assert lines[1].startswith("enrolled  ") and "Colin_Powell_0001.jpg" in lines[1]
    assert "warning: 1 photo looks like another person in this collection and was not enrolled" in res.stdout
    assert f"facevault enroll g 'Colin Powell' --anyway {wrong}" in res.stdout

    res = runner.invoke(app, ["enroll", "g", "Colin Powell", wrong, "--home", home, "--json"])
    assert res.exit_code == EXIT_PARTIAL
    assert json.loads(res.stdout)[0]["reason"] == "resembles_another_subject"
    shown = json.loads(
        runner.invoke(app, ["subject", "show", "g", "Colin Powell", "--home", home, "--json"]).stdout
    )
    assert len(shown["samples"]) == 1  # only Colin Powell's own photo

    res = runner.invoke(app, ["enroll", "g", "Colin Powell", wrong, "--anyway", "--home", home])
    assert res.exit_code == 0, res.output
    assert (
        res.stdout.startswith("enrolled  ") and "enrolled anyway: the face resembles subject #1" in res.stdout
    )


# ---- 3. faces left to right -------------------------------------------------------------------------
@pytest.mark.anyio
async def test_group_search_lists_faces_left_to_right(api_app, role_keys) -> None:
    """obama_and_biden.jpg: the detector finds its three faces out of order (x 1120, 735, 1625); the
    result lists them left to right, face_index is that place, and the summary, the audit entry's
    candidates and the CLI text follow the same order."""
    vault = api_app.state.vault
    train = {
        "Barack Obama": ("obama", ["obama.jpg", "obama2.jpg"]),
        "Joe Biden": ("biden", ["biden.jpg", "biden2.jpg"]),
    }
    vault.create_collection("g")
    for who, (folder, names) in train.items():
        vault.add_subject("g", who, purpose="testing", consent_text="signed (test)")
        assert all(
            o.ok for o in vault.enroll("g", who, [data_path(*EXAMPLES, "train", folder, n) for n in names])
        )
    probe = data_path(*GROUP)
    async with asgi_client(api_app) as c:
        r = await c.post(
            "/api/v1/collections/g/search",
            files={"image": ("group.jpg", probe.read_bytes(), "image/jpeg")},
            data={"purpose": "testing"},
            headers=auth(role_keys["searcher"]),
        )
    assert r.status_code == 200, r.text
    res = r.json()
    faces = res["faces"]
    assert len(faces) == 3
    assert [f["face_index"] for f in faces] == [0, 1, 2]
    xs = [f["box"][0] for f in faces]
    assert xs == sorted(xs)
    best = [f["candidates"][0]["name"] if f["candidates"] else "no match" for f in faces]
    assert "Barack Obama" in best and "Joe Biden" in best
    labels = [
        part.rsplit(" ", 1)[0] if part != "no match" else part
        for part in res["summary"].split(": ", 1)[1].split("; ")
    ]
    assert res["summary"].startswith("3 faces: ") and labels == best
    [entry] = vault.audit_entries(1, action="search")
    logged = [[c[0] for c in face] for face in entry["details"]["candidates"]]
    assert logged == [[c["subject_id"] for c in f["candidates"]] for f in faces]

    out = CliRunner().invoke(
        app, ["search", "g", str(probe), "--purpose", "testing", "--home", str(vault.settings.home)]
    )
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == res["summary"]
    places = [line for line in lines if line.startswith("face ")]
    assert [p.split(" at ")[0] for p in places] == [f"face {i} (from the left)" for i in (1, 2, 3)]
    assert [p.split(" at ")[1].rstrip(":") for p in places] == [str(f["box"]) for f in faces]


# ---- 4. audit names and pages -------------------------------------------------------------------------
@pytest.mark.anyio
async def test_audit_entries_name_keys_and_subjects_for_roles_that_may_know(api_app, role_keys) -> None:
    vault = api_app.state.vault
    vault.create_collection("g")
    ann = vault.add_subject("g", "Ann Lee", purpose="testing", consent_text="signed (test)")
    gone = vault.add_subject("g", "Bo Erased", purpose="testing", consent_text="signed (test)")
    vault.erase_subject("g", f"#{gone['id']}")
    async with asgi_client(api_app) as c:
        r = await c.post(
            f"/api/v1/collections/g/subjects/{ann['id']}/samples",
            files=[("images", photo("Colin_Powell", 1))],
            headers=auth(role_keys["enroller"]),
        )
        assert r.json()["enrolled"] == 1
        admin = (
            await c.get("/api/v1/audit", params={"limit": 1000}, headers=auth(role_keys["admin"]))
        ).json()
        auditor = (
            await c.get("/api/v1/audit", params={"limit": 1000}, headers=auth(role_keys["auditor"]))
        ).json()

        enroll = next(e for e in admin if e["action"] == "enroll")
        assert enroll["actor_name"] == "enroller test key"
        assert enroll["subject_names"] == {str(ann["id"]): "Ann Lee"}
        erased = next(e for e in admin if e["action"] == "subject.erase")
        assert erased["subject_names"] == {} and erased["actor_name"] is None  # erased: an id only; CLI actor
        # an auditor reads the log, not the gallery: key names, never subject names
        seen = next(e for e in auditor if e["action"] == "enroll")
        assert seen["actor_name"] == "enroller test key" and "subject_names" not in seen
        assert "Ann Lee" not in json.dumps(auditor)

        # pages: before=<seq> gives the entries older than that one, newest first, none twice
        page1 = (await c.get("/api/v1/audit", params={"limit": 3}, headers=auth(role_keys["auditor"]))).json()
        page2 = (
            await c.get(
                "/api/v1/audit",
                params={"limit": 3, "before": page1[-1]["seq"], "until": _next_second(page1[-1]["at"])},
                headers=auth(role_keys["auditor"]),
            )
        ).json()
        every = (
            await c.get("/api/v1/audit", params={"limit": 1000}, headers=auth(role_keys["auditor"]))
        ).json()
    newest = page1[0]["seq"]
    assert [e["seq"] for e in page1 + page2] == [e["seq"] for e in every if e["seq"] <= newest][:6]


def _next_second(at: str) -> str:
    """The whole second after an entry's time, as the web UI asks for the next page."""
    t0 = datetime.fromisoformat(at).replace(microsecond=0) + timedelta(seconds=1)
    return t0.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- 5. collections: settings and the detectors to choose from ------------------------------------------
@pytest.mark.anyio
async def test_collections_show_their_settings_and_the_detectors_to_choose_from(api_app, role_keys) -> None:
    adm = auth(role_keys["admin"])
    async with asgi_client(api_app) as c:
        choices = (await c.get("/api/v1/collections/-/choices", headers=adm)).json()
        assert "dlib-resnet-v1" in choices["models"]
        assert {"dlib-hog", "dlib-mmod"} <= {d["name"] for d in choices["detectors"]}
        assert all("source" not in d for d in choices["detectors"])  # no server paths
        denied = await c.get("/api/v1/collections/-/choices", headers=auth(role_keys["enroller"]))
        assert denied.status_code == 403
        r = await c.post("/api/v1/collections", json={"name": "doors", "detector": "dlib-hog"}, headers=adm)
        assert r.status_code == 201, r.text
        [row] = (await c.get("/api/v1/collections", headers=adm)).json()
    assert (row["detector"], row["retention_days"], row["keep_crops"]) == ("dlib-hog", 1095, False)
