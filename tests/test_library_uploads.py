"""Photo libraries fed by upload, on real photos (shared LFW and FDDB), through the REST API: per-file
results (a corrupt file, a duplicate, a re-upload), the copies kept and verified, a photo's pixels in
the frame of its face boxes (EXIF orientation applied as ingest did), roles, erasure that blurs or
removes the photos, and a writer killed between its commit and placing the copies."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import facevault
from facevault.api import create_app
from facevault.service.library_photos import blur_region

from .conftest import data_path, lfw, run_cli
from .test_api_support import TEST_SETTINGS, auth

pytestmark = pytest.mark.data

GROUP = ("2002", "08", "26", "big", "img_265.jpg")  # three faces, 449 x 305
PORTRAIT = ("2002", "08", "21", "big", "img_265.jpg")  # one face, 304 x 450
LIB = "/api/v1/libraries/up"
ROLES = ("admin", "enroller", "reviewer", "searcher", "auditor")


def _group_bytes() -> bytes:
    return data_path("fddb", "images", *GROUP).read_bytes()


def _turned_with_exif(data: bytes) -> bytes:
    """The photo stored turned a quarter, with the EXIF orientation (6) that shows it upright again."""
    img = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _uploads() -> list[tuple[str, bytes]]:
    return [
        *((f"Colin_Powell_{i}.jpg", lfw("Colin_Powell", i).read_bytes()) for i in (1, 2, 3)),
        ("Tony_Blair_1.jpg", lfw("Tony_Blair", 1).read_bytes()),
        ("group.jpg", _group_bytes()),
        ("turned.jpg", _turned_with_exif(data_path("fddb", "images", *PORTRAIT).read_bytes())),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"),
        ("again/Colin_Powell_1.jpg", lfw("Colin_Powell", 1).read_bytes()),  # a duplicate
    ]


def _files(items: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/jpeg")) for name, data in items]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """A vault with library "up" (keeping crops) fed once by upload; each test works on its own copy."""
    root = tmp_path_factory.mktemp("uploads")
    v = facevault.open(str(root / "home"), create=True)
    keys = {r: v.create_api_key(r, f"{r} key")[0] for r in ROLES}
    with TestClient(create_app(v, settings=TEST_SETTINGS)) as c:
        body = {"name": "up", "purpose": "family album", "basis": "household", "keep_crops": True}
        assert c.post("/api/v1/libraries", json=body, headers=auth(keys["admin"])).status_code == 201
        r = c.post(f"{LIB}/uploads", files=_files(_uploads()), headers=auth(keys["enroller"]))
        assert r.status_code == 200, r.text
    v.close()
    return root / "home", keys, r.json()


@pytest.fixture
def up(built, tmp_path: Path):  # type: ignore[no-untyped-def]
    import shutil

    home, keys, first = built
    shutil.copytree(home, tmp_path / "vault")
    v = facevault.open(str(tmp_path / "vault"))
    with TestClient(create_app(v, settings=TEST_SETTINGS)) as c:
        yield v, c, keys, first
    v.close()


def _faces(c: TestClient, key: str) -> list[dict[str, Any]]:
    out = []
    for p in c.get(f"{LIB}/people", params={"hidden": True}, headers=auth(key)).json():
        shown = c.get(f"{LIB}/people/{p['person']}", headers=auth(key)).json()
        out += [f | {"person": p["person"]} for f in shown["faces_list"]]
    return out


def _image(c: TestClient, key: str, photo_id: int) -> np.ndarray:
    r = c.get(f"{LIB}/photos/{photo_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)


def _copy(v, sha: str) -> Path:  # type: ignore[no-untyped-def]
    lib_id = v.libraries.get_library("up")["id"]
    return Path(v.settings.library_photo_path(lib_id, sha))


def test_upload_gives_a_result_per_file_and_keeps_verified_copies(up) -> None:
    v, c, keys, first = up
    by_name = {f["name"]: f for f in first["files"]}
    assert [f["name"] for f in first["files"]][-1] == "Colin_Powell_1.jpg"  # the path part is dropped
    assert [f["status"] for f in first["files"]] == ["added"] * 6 + ["failed", "skipped"]
    assert first["files"][6]["error"] == "unreadable_image" and first["files"][6]["faces"] == 0
    assert first["files"][7]["photo_id"] == first["files"][0]["photo_id"]  # the duplicate is that photo
    assert by_name["group.jpg"]["faces"] == 3 and all(f["faces"] >= 1 for f in first["files"][:6])
    assert (first["photos"], first["added"], first["failed"], first["skipped"]) == (8, 6, 1, 1)
    assert first["faces"] == sum(f["faces"] for f in first["files"])
    for (_, data), f in zip(_uploads()[:6], first["files"][:6], strict=True):
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        assert hashlib.sha256(_copy(v, f["sha256"]).read_bytes()).hexdigest() == f["sha256"]
    staging = Path(v.settings.library_photos_root) / ".staging"
    assert not staging.exists() or not list(staging.iterdir())  # nothing left staged
    listed = c.get("/api/v1/libraries", headers=auth(keys["searcher"])).json()
    assert listed[0]["keep_copies"] is True and listed[0]["photos"] == 7
    entry = v.audit_entries(1, action="library.add")[0]
    assert entry["details"]["photos_added"] == 6 and entry["details"]["photos_failed"] == 1

    again = c.post(f"{LIB}/uploads", files=_files(_uploads()), headers=auth(keys["enroller"]))
    assert again.status_code == 200, again.text
    assert {f["status"] for f in again.json()["files"]} == {"skipped"} and again.json()["faces"] == 0
    sources = {f["photo"] for f in _faces(c, keys["searcher"])}
    assert "upload:group.jpg" in sources and not any("/" in s for s in sources)


def test_photo_matches_the_frame_of_its_boxes_with_exif_orientation(up) -> None:
    _, c, keys, _ = up
    faces = _faces(c, keys["reviewer"])
    assert faces and all(f["image_width"] and f["image_height"] for f in faces)
    originals = dict(_uploads())
    for f in faces:
        img = _image(c, keys["reviewer"], f["photo_id"])
        assert img.shape[1::-1] == (f["image_width"], f["image_height"])  # the boxes' frame
        x1, y1, x2, y2 = f["box"]
        assert 0 <= x1 < x2 <= f["image_width"] and 0 <= y1 < y2 <= f["image_height"]
        name = f["photo"].removeprefix("upload:")
        if name == "turned.jpg":  # stored on its side: served upright, as ingest saw it
            upright = data_path("fddb", "images", *PORTRAIT).read_bytes()
        else:
            upright = originals[name]
        want = np.asarray(Image.open(io.BytesIO(upright)).convert("RGB"), dtype=np.int16)
        assert want.shape == img.shape, name
        assert np.abs(img - want).mean() < 4.0, name  # the same pixels (up to JPEG re-encoding)
    turned = next(f for f in faces if f["photo"] == "upload:turned.jpg")
    assert Image.open(io.BytesIO(originals["turned.jpg"])).size == (450, 304)  # as stored
    assert (turned["image_width"], turned["image_height"]) == (304, 450)  # as ingest saw it


def test_tampered_or_missing_copy_is_refused(up) -> None:
    v, c, keys, first = up
    f = first["files"][0]
    copy = _copy(v, f["sha256"])
    copy.write_bytes(lfw("Tony_Blair", 2).read_bytes())  # other pixels under the old boxes
    r = c.get(f"{LIB}/photos/{f['photo_id']}", headers=auth(keys["searcher"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "photo_changed", r.text
    copy.unlink()
    r = c.get(f"{LIB}/photos/{f['photo_id']}", headers=auth(keys["searcher"]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "photo_missing", r.text
    broken = first["files"][6]["photo_id"]  # an unreadable file has no pixels
    assert c.get(f"{LIB}/photos/{broken}", headers=auth(keys["searcher"])).status_code == 404
    assert c.get(f"{LIB}/photos/999999", headers=auth(keys["searcher"])).status_code == 404


def test_photo_by_server_path_is_served_while_unchanged(up, tmp_path: Path) -> None:
    _, c, keys, _ = up
    folder = tmp_path / "server"
    folder.mkdir()
    (folder / "b.jpg").write_bytes(lfw("Tony_Blair", 3).read_bytes())
    r = c.post(f"{LIB}/photos", json={"paths": [str(folder)]}, headers=auth(keys["enroller"]))
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    face = next(f for f in _faces(c, keys["searcher"]) if f["photo"] == str(folder / "b.jpg"))
    assert _image(c, keys["searcher"], face["photo_id"]).shape[:2] == (250, 250)
    (folder / "b.jpg").write_bytes(lfw("Tony_Blair", 4).read_bytes())
    r = c.get(f"{LIB}/photos/{face['photo_id']}", headers=auth(keys["searcher"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "photo_changed"


def test_roles(up) -> None:
    _, c, keys, first = up
    url = f"{LIB}/photos/{first['files'][0]['photo_id']}"
    for role in ("admin", "enroller", "reviewer", "searcher"):
        assert c.get(url, headers=auth(keys[role])).status_code == 200, role
    assert c.get(url, headers=auth(keys["auditor"])).status_code == 403
    assert c.get(url).status_code == 401
    one = _files([("x.jpg", lfw("Jacques_Chirac", 1).read_bytes())])
    for role in ("searcher", "reviewer", "auditor"):
        assert c.post(f"{LIB}/uploads", files=one, headers=auth(keys[role])).status_code == 403, role
    assert c.post(f"{LIB}/uploads", files=one, headers=auth(keys["enroller"])).json()["added"] == 1
    person = _faces(c, keys["searcher"])[0]["person"]
    assert c.delete(f"{LIB}/people/{person}", headers=auth(keys["enroller"])).status_code == 403
    bad = c.delete(f"{LIB}/people/{person}", params={"photos": "shred"}, headers=auth(keys["admin"]))
    assert bad.status_code == 422
    assert c.post(f"{LIB}/uploads", json={}, headers=auth(keys["enroller"])).status_code == 422
    assert (
        c.post("/api/v1/libraries/nope/uploads", files=one, headers=auth(keys["enroller"])).status_code == 404
    )


def _group_faces(c: TestClient, key: str) -> list[dict[str, Any]]:
    return sorted((f for f in _faces(c, key) if f["photo"] == "upload:group.jpg"), key=lambda f: f["box"][0])


def _region(f: dict[str, Any], img: np.ndarray) -> tuple[slice, slice]:
    x1, y1, x2, y2 = blur_region(img.shape[1], img.shape[0], f["box"])
    return slice(y1, y2), slice(x1, x2)


def _inside(f: dict[str, Any]) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (round(v) for v in f["box"])
    return slice(y1, y2), slice(x1, x2)


def _overlap(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return (
        a[0].start < b[0].stop
        and b[0].start < a[0].stop
        and a[1].start < b[1].stop
        and b[1].start < a[1].stop
    )


def _sharpness(img: np.ndarray) -> float:
    grey = img.mean(axis=2)
    return float(
        np.var(grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    )


def _vault_bytes(v) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [p.read_bytes() for p in Path(v.settings.home).rglob("*") if p.is_file() and "keys" not in p.parts]


def test_erase_with_blur_changes_only_the_persons_faces(up) -> None:
    v, c, keys, _ = up
    group = _group_faces(c, keys["searcher"])
    assert len(group) == 3
    gone, others = group[-1], group[:-1]  # the rightmost face: its blur does not reach the others
    before = _image(c, keys["searcher"], gone["photo_id"])
    assert not any(_overlap(_region(gone, before), _inside(o)) for o in others)
    ids = [gone["face_id"]]
    with sqlite3.connect(v.settings.db_path) as db:
        blobs = [r[0] for r in db.execute("SELECT vector FROM library_faces WHERE id = ?", ids)]
        crops = [r[0] for r in db.execute("SELECT image FROM library_crops WHERE face_id = ?", ids)]
    assert len(blobs) == len(crops) == 1
    original = _group_bytes()
    needles = [blobs[0][16:80], crops[0][16:80], original[2000:2064]]
    assert all(any(n in b for b in _vault_bytes(v)) for n in needles)  # the scan finds them before

    r = c.delete(f"{LIB}/people/{gone['person']}", params={"photos": "blur"}, headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["photos"] == "blur" and receipt["photos_blurred"] == 1 and receipt["photos_removed"] == 0
    assert receipt["faces_erased"] == 1 and receipt["crops_erased"] == 1
    after = _image(c, keys["searcher"], gone["photo_id"])  # the new copy verifies against its row
    assert after.shape == before.shape
    ys, xs = _inside(gone)
    changed = np.abs(after[ys, xs] - before[ys, xs]).mean()
    assert changed > 12, changed
    assert _sharpness(after[ys, xs]) < 0.05 * _sharpness(before[ys, xs])  # no facial detail left
    for o in others:
        oy, ox = _inside(o)
        assert np.abs(after[oy, ox] - before[oy, ox]).mean() < 2.0  # the others' faces are as they were
    left = _group_faces(c, keys["searcher"])
    assert [f["face_id"] for f in left] == [o["face_id"] for o in others]  # still there, same boxes
    assert [f["box"] for f in left] == [o["box"] for o in others]
    assert left[0]["photo_sha256"] != hashlib.sha256(original).hexdigest()  # the row follows the file
    data = _vault_bytes(v)
    assert not [n for n in needles if any(n in b for b in data)]  # template, crop, original photo: gone
    entry = v.audit_entries(1, action="library.erase")[0]
    assert entry["details"]["photos_blurred"] == 1
    # The original photo, uploaded again, is not indexed again (its hash is remembered as erased).
    again = c.post(f"{LIB}/uploads", files=_files([("g.jpg", original)]), headers=auth(keys["enroller"]))
    assert again.json()["files"][0]["status"] == "skipped"
    assert len(_group_faces(c, keys["searcher"])) == 2


def test_erase_with_remove_takes_the_photo_for_everyone(up) -> None:
    v, c, keys, _ = up
    group = _group_faces(c, keys["searcher"])
    photo_id, sha = group[0]["photo_id"], group[0]["photo_sha256"]
    assert _copy(v, sha).exists()
    r = c.delete(
        f"{LIB}/people/{group[0]['person']}", params={"photos": "remove"}, headers=auth(keys["admin"])
    )
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert (
        receipt["photos_removed"] == 1 and receipt["other_faces_removed"] == 2 and receipt["photos_kept"] == 0
    )
    assert not _copy(v, sha).exists()
    assert _group_faces(c, keys["searcher"]) == []
    assert c.get(f"{LIB}/photos/{photo_id}", headers=auth(keys["searcher"])).status_code == 404
    assert c.get("/api/v1/libraries", headers=auth(keys["searcher"])).json()[0]["photos"] == 6
    again = c.post(
        f"{LIB}/uploads", files=_files([("g.jpg", _group_bytes())]), headers=auth(keys["enroller"])
    )
    assert again.json()["files"][0]["status"] == "skipped"
    keep = c.delete(f"{LIB}/people/{_faces(c, keys['searcher'])[0]['person']}", headers=auth(keys["admin"]))
    assert keep.json()["photos"] == "keep" and keep.json()["photos_kept"] >= 1  # the default
    assert v.doctor().ok


CHILD = """
import sys, facevault
v = facevault.open()
v.libraries.library_upload("up", [(p.rsplit("/", 1)[-1], open(p, "rb").read()) for p in sys.argv[1:]])
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["library:copies_staged", "library:photos_committed"])
def test_killed_between_commit_and_placing_leaves_no_orphan(up, point: str) -> None:
    v, c, keys, _ = up
    home = Path(v.settings.home)
    paths = [str(lfw("Laura_Bush", i)) for i in (1, 2)]
    env = {**os.environ, "FACEVAULT_HOME": str(home), "FACEVAULT_CRASH_AT": point}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *paths], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == -9, f"no SIGKILL at {point}: {proc.stderr[-2000:]}"
    staging = Path(v.settings.library_photos_root) / ".staging"
    assert len(list(staging.iterdir())) == 2  # what the killed writer left
    shas = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    with facevault.open(str(home)) as reopened:  # finishes or removes what the writer left
        lib_id = reopened.libraries.get_library("up")["id"]
        with sqlite3.connect(reopened.settings.db_path) as db:
            rows = {
                r[0]: r[1]
                for r in db.execute(
                    "SELECT sha256, stored FROM library_photos WHERE library_id = ?", [lib_id]
                )
            }
        committed = point == "library:photos_committed"
        assert all((sha in rows) == committed for sha in shas)
        assert list(staging.iterdir()) == []
        folder = Path(reopened.settings.library_photo_path(lib_id, "x")).parent
        on_disk = {p.name for p in folder.iterdir()}
        kept = {sha for sha, stored in rows.items() if stored}
        assert on_disk == kept  # every copy has its row and every row keeping a copy has it
        assert all((sha in on_disk) == committed for sha in shas)
        assert reopened.doctor().ok
    if committed:
        face = next(f for f in _faces(c, keys["searcher"]) if f["photo_sha256"] == shas[0])
        assert _image(c, keys["searcher"], face["photo_id"]).shape[:2] == (250, 250)


@pytest.mark.slow
def test_cli_person_erase_takes_photos(up) -> None:
    v, c, keys, _ = up
    home = str(v.settings.home)
    person = _group_faces(c, keys["searcher"])[-1]["person"]
    refused = run_cli(home, "library", "person", "erase", "up", str(person), "--photos", "shred")
    assert refused.returncode == 3 and "keep, blur, remove" in refused.stderr
    done = run_cli(home, "library", "person", "erase", "up", str(person), "--photos", "blur", "--json")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["photos"] == "blur" and receipt["photos_blurred"] == 1
    assert len(_group_faces(c, keys["searcher"])) == 2


def test_a_file_over_the_upload_limit_fails_alone(up) -> None:
    v, _, keys, _ = up
    small = TEST_SETTINGS.with_overrides(max_upload_bytes=20_000)
    items = [("big.jpg", _group_bytes()), ("small.jpg", lfw("Laura_Bush", 3).read_bytes())]
    assert len(items[0][1]) > 20_000 > len(items[1][1])
    with TestClient(create_app(v, settings=small)) as c:
        r = c.post(f"{LIB}/uploads", files=_files(items), headers=auth(keys["enroller"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(f["name"], f["status"]) for f in body["files"]] == [
        ("big.jpg", "failed"),
        ("small.jpg", "added"),
    ]
    assert body["files"][0]["error"] == "image_too_large"
    assert (body["photos"], body["added"], body["failed"]) == (2, 1, 1)


def test_every_person_has_a_feature_face_and_an_enroller_can_choose_it(up) -> None:
    _, c, keys, _ = up
    people = c.get(f"{LIB}/people", headers=auth(keys["searcher"])).json()
    for p in people:  # the list shows the face the person page shows, one of that person's faces
        shown = c.get(f"{LIB}/people/{p['person']}", headers=auth(keys["searcher"])).json()
        assert p["feature_face"] == shown["feature_face"]
        assert p["feature_face"] in {f["face_id"] for f in shown["faces_list"]}
    many = next(p for p in people if p["faces"] >= 2)
    faces = [
        f["face_id"]
        for f in c.get(f"{LIB}/people/{many['person']}", headers=auth(keys["admin"])).json()["faces_list"]
    ]
    other = next(f for f in faces if f != many["feature_face"])
    url = f"{LIB}/people/{many['person']}/feature"
    assert c.post(url, json={"face_id": other}, headers=auth(keys["searcher"])).status_code == 403
    r = c.post(url, json={"face_id": other}, headers=auth(keys["enroller"]))
    assert r.status_code == 200, r.text
    assert r.json()["feature_face"] == other
    listed = {p["person"]: p for p in c.get(f"{LIB}/people", headers=auth(keys["reviewer"])).json()}
    assert listed[many["person"]]["feature_face"] == other
    stranger = next(p for p in people if p["person"] != many["person"])
    wrong = c.post(url, json={"face_id": stranger["feature_face"]}, headers=auth(keys["enroller"]))
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "not_this_person"


def test_people_come_a_page_at_a_time_in_a_stable_order(up) -> None:
    _, c, keys, _ = up
    key = auth(keys["reviewer"])
    everyone = c.get(f"{LIB}/people", params={"hidden": True}, headers=key).json()
    assert len(everyone) >= 4
    pages = [
        c.get(f"{LIB}/people", params={"hidden": True, "limit": 2, "offset": o}, headers=key).json()
        for o in range(0, len(everyone) + 2, 2)
    ]
    assert all(len(p) <= 2 for p in pages) and pages[-1] == []
    assert [p["person"] for page in pages for p in page] == [p["person"] for p in everyone]
    assert [p["faces"] for p in everyone] == sorted((p["faces"] for p in everyone), reverse=True)
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert c.get(f"{LIB}/people", params=bad, headers=key).status_code == 422


def test_server_paths_over_http_only_from_the_folders_the_operator_allows(up, tmp_path: Path) -> None:
    v, _, keys, _ = up
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "in.jpg").write_bytes(lfw("Laura_Bush", 1).read_bytes())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(lfw("Laura_Bush", 2).read_bytes())
    (allowed / "link.jpg").symlink_to(outside / "secret.jpg")  # a link out of the allowed folder
    enroller = auth(keys["enroller"])
    body = {"paths": [str(allowed)]}
    with TestClient(create_app(v, settings=TEST_SETTINGS.with_overrides(library_roots=""))) as off:
        r = off.post(f"{LIB}/photos", json=body, headers=enroller)
        assert r.status_code == 403 and r.json()["error"]["code"] == "server_paths_disabled"
    with TestClient(create_app(v, settings=TEST_SETTINGS.with_overrides(library_roots=str(allowed)))) as c:
        for refused in (
            [str(outside)],
            [str(outside / "secret.jpg")],
            [str(allowed / ".." / "elsewhere")],
            ["/"],
        ):
            r = c.post(f"{LIB}/photos", json={"paths": refused}, headers=enroller)
            assert r.status_code == 422 and r.json()["error"]["code"] == "path_not_allowed", refused
        r = c.post(f"{LIB}/photos", json=body, headers=enroller)
        assert r.status_code == 200 and (r.json()["photos"], r.json()["added"]) == (1, 1), r.text
        sources = {f["photo"] for f in _faces(c, keys["searcher"])}
    assert str(allowed / "in.jpg") in sources
    assert not any("secret" in s or "link" in s for s in sources)


@pytest.mark.parametrize("ref", ["²", "٣", "0", "#0", "-1", "1" * 20, "9223372036854775808", "x", "#"])
def test_a_person_reference_that_is_no_number_is_refused_not_a_500(up, ref: str) -> None:
    """``str.isdigit`` takes ``²`` and Arabic-Indic digits, which ``int`` refuses (found by the fuzz test:
    ``DELETE .../people/²`` answered 500); 20 digits overflow an id."""
    _, c, keys, _ = up
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/feature")):
        body = {"face_id": 1} if method == "POST" else None
        r = c.request(
            method, f"{LIB}/people/{quote(ref, safe='')}{path}", headers=auth(keys["admin"]), json=body
        )
        assert r.status_code in (404, 422), (method, ref, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] in ("invalid_person", "not_found"), (method, ref, r.text[:200])


def test_a_photo_id_past_the_largest_id_is_refused_not_a_500(up) -> None:
    _, c, keys, _ = up
    r = c.get(f"{LIB}/photos/{2**63}", headers=auth(keys["admin"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_id", r.text[:200]


def test_a_people_page_past_the_largest_id_is_refused_not_a_500(up) -> None:
    _, c, keys, _ = up
    r = c.get(f"{LIB}/people", params={"offset": 2**63}, headers=auth(keys["admin"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_page", r.text[:200]
