"""An opt-out reaches the copies a photo library keeps (issue 13), on real photos (shared LFW and FDDB),
through the REST API: the person's face is blurred in every kept copy while the other faces of the
photo stay as they were, no template, crop or unblurred copy of theirs is left in the vault folder, a
photo by server path is counted as not blurred (facevault does not own it), a later upload of the
person is blurred before its copy is written (and the same file uploaded again is skipped), and a
process killed between the opt-out's commit and the blur leaves no unblurred copy after reopening."""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import facevault
from facevault.api import create_app
from facevault.service.library_photos import blur_region

from .conftest import data_path, lfw, run_cli
from .test_api_support import TEST_SETTINGS, auth
from .test_library_uploads import _faces, _files  # the same library name (LIB) and requests

pytestmark = pytest.mark.data

GROUP = ("2002", "08", "26", "big", "img_265.jpg")  # three faces, 449 x 305
LIB = "/api/v1/libraries/up"
ROLES = ("admin", "enroller", "searcher")
X = "Colin_Powell"  # the person who opts out
GAP = 60  # between the group photo and the pasted portrait: no blur of one reaches the other
TILE = 250  # an LFW photo's side


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _with_portrait(number: int) -> bytes:
    """The FDDB group photo (three faces) with an LFW photo of X to its right: X among other people."""
    group = Image.open(data_path("fddb", "images", *GROUP)).convert("RGB")
    portrait = Image.open(lfw(X, number)).convert("RGB")
    canvas = Image.new("RGB", (group.width + GAP + TILE, max(group.height, TILE)), (128, 128, 128))
    canvas.paste(group, (0, 0))
    canvas.paste(portrait, (group.width + GAP, 0))
    return _jpeg(canvas)


def _portrait_left() -> int:
    return Image.open(data_path("fddb", "images", *GROUP)).width + GAP


def _uploads() -> list[tuple[str, bytes]]:
    return [
        ("x_1.jpg", lfw(X, 1).read_bytes()),
        ("x_2.jpg", lfw(X, 2).read_bytes()),
        ("party.jpg", _with_portrait(3)),
        ("blair.jpg", lfw("Tony_Blair", 1).read_bytes()),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A vault with library "up" (keeping crops) fed by upload, and one photo of X added by server path;
    each test works on its own copy."""
    root = tmp_path_factory.mktemp("optout-copies")
    server = root / "server"
    server.mkdir()
    shutil.copy(lfw(X, 6), server / "x_6.jpg")
    v = facevault.open(str(root / "home"), create=True)
    keys = {r: v.create_api_key(r, f"{r} key")[0] for r in ROLES}
    with TestClient(create_app(v, settings=TEST_SETTINGS)) as c:
        body = {"name": "up", "purpose": "family album", "basis": "household", "keep_crops": True}
        assert c.post("/api/v1/libraries", json=body, headers=auth(keys["admin"])).status_code == 201
        r = c.post(f"{LIB}/uploads", files=_files(_uploads()), headers=auth(keys["enroller"]))
        assert r.status_code == 200, r.text
        assert [f["status"] for f in r.json()["files"]] == ["added"] * 4
        r = c.post(f"{LIB}/photos", json={"paths": [str(server)]}, headers=auth(keys["enroller"]))
        assert r.status_code == 200 and r.json()["added"] == 1, r.text
    v.close()
    return root / "home", server, keys


@pytest.fixture
def up(built, tmp_path: Path):  # type: ignore[no-untyped-def]
    home, server, keys = built
    shutil.copytree(home, tmp_path / "vault")
    v = facevault.open(str(tmp_path / "vault"))
    with TestClient(create_app(v, settings=TEST_SETTINGS)) as c:
        yield v, c, keys, server
    v.close()


def _name(face: dict[str, Any]) -> str:
    return Path(face["photo"].removeprefix("upload:")).name


def _is_x(face: dict[str, Any]) -> bool:
    """X's face: the central face of X's LFW photos, the pasted portrait's face in the composites."""
    x1, y1, x2, y2 = face["box"]
    name = _name(face)
    if name in ("x_1.jpg", "x_2.jpg", "x_6.jpg"):
        return x1 < TILE / 2 < x2 and y1 < TILE / 2 < y2
    if name in ("party.jpg", "later.jpg"):
        return x1 >= _portrait_left()
    return False


def _image(c: TestClient, key: str, photo_id: int) -> np.ndarray:
    r = c.get(f"{LIB}/photos/{photo_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _inside(box: list[float]) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (round(v) for v in box)
    return slice(y1, y2), slice(x1, x2)


def _region(box: list[float], img: np.ndarray) -> tuple[slice, slice]:
    x1, y1, x2, y2 = blur_region(img.shape[1], img.shape[0], box)
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


def _assert_blurred(before: np.ndarray, after: np.ndarray, box: list[float]) -> None:
    assert after.shape == before.shape
    ys, xs = _inside(box)
    changed = np.abs(after[ys, xs] - before[ys, xs]).mean()
    assert changed > 12, changed
    assert _sharpness(after[ys, xs]) < 0.05 * _sharpness(before[ys, xs])  # no facial detail left


def _vault_bytes(home: Path) -> list[bytes]:
    return [p.read_bytes() for p in home.rglob("*") if p.is_file() and "keys" not in p.parts]


def _copies(v) -> tuple[Path, dict[str, bool]]:  # type: ignore[no-untyped-def]
    """The library's copy folder, and sha256 -> stored of its photo rows that keep a copy."""
    lib_id = v.libraries.get_library("up")["id"]
    folder = Path(v.settings.library_photo_path(lib_id, "x")).parent
    with sqlite3.connect(v.settings.db_path) as db:
        rows = {
            r[0]: bool(r[1])
            for r in db.execute(
                "SELECT sha256, stored FROM library_photos WHERE library_id = ? AND status = 'done'", [lib_id]
            )
        }
    return folder, rows


def _optout(c: TestClient, key: str, number: int) -> dict[str, Any]:
    selfie = lfw(X, number).read_bytes()
    r = c.post("/api/v1/optout", files={"image": ("selfie.jpg", selfie, "image/jpeg")}, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_optout_blurs_the_person_in_every_kept_copy(up) -> None:
    v, c, keys, server = up
    faces = _faces(c, keys["searcher"])
    mine = [f for f in faces if _is_x(f)]
    assert {_name(f) for f in mine} == {"x_1.jpg", "x_2.jpg", "party.jpg", "x_6.jpg"}
    group = sorted(
        (f for f in faces if f["photo"] == "upload:party.jpg" and not _is_x(f)), key=lambda f: f["face_id"]
    )
    assert len(group) == 3  # the three people of the group photo
    stored = [f for f in mine if f["photo"].startswith("upload:")]
    before = {f["photo_id"]: _image(c, keys["searcher"], f["photo_id"]) for f in stored}
    party = next(f for f in stored if f["photo"] == "upload:party.jpg")
    assert not any(
        _overlap(_region(party["box"], before[party["photo_id"]]), _inside(o["box"])) for o in group
    )
    ids = [f["face_id"] for f in mine]
    with sqlite3.connect(v.settings.db_path) as db:
        marks = ",".join("?" * len(ids))
        blobs = [r[0] for r in db.execute(f"SELECT vector FROM library_faces WHERE id IN ({marks})", ids)]
        crops = [r[0] for r in db.execute(f"SELECT image FROM library_crops WHERE face_id IN ({marks})", ids)]
    assert len(blobs) == len(crops) == len(ids)
    originals = [data for name, data in _uploads() if name != "blair.jpg"]
    needles = [b[16:80] for b in blobs] + [b[16:80] for b in crops] + [d[2000:2064] for d in originals]
    home = Path(v.settings.home)
    assert all(any(n in b for b in _vault_bytes(home)) for n in needles)  # the scan finds them before

    report = _optout(c, keys["enroller"], 4)
    assert report["library_people_erased"] and all(r[0] == "up" for r in report["library_people_erased"])
    assert report["library_photos_blurred"] == 3  # x_1, x_2 and party: the kept copies
    assert report["library_photos_not_owned"] == 1  # x_6, by server path: faces erased, file as it was
    entry = v.audit_entries(1, action="optout")[0]
    assert entry["details"]["library_photos_blurred"] == 3
    assert entry["details"]["library_photos_not_owned"] == 1
    receipts = v.audit_entries(10, action="library.erase")
    assert receipts and all(e["details"]["photos"] == "blur" for e in receipts)
    assert sum(e["details"]["photos_blurred"] for e in receipts) == 3
    assert sum(e["details"]["photos_not_owned"] for e in receipts) == 1

    after_faces = _faces(c, keys["searcher"])
    assert not [f for f in after_faces if _is_x(f)]  # none of X's faces is left
    left = sorted((f for f in after_faces if f["photo"] == "upload:party.jpg"), key=lambda f: f["face_id"])
    assert [f["face_id"] for f in left] == [o["face_id"] for o in group]  # the others: there, same boxes
    assert left[0]["photo_sha256"] != hashlib.sha256(_uploads()[2][1]).hexdigest()  # the row follows
    for f in stored:
        after = _image(c, keys["searcher"], f["photo_id"])  # the new copy verifies against its row
        _assert_blurred(before[f["photo_id"]], after, f["box"])
        if f is party:
            for o in group:
                oy, ox = _inside(o["box"])
                assert np.abs(after[oy, ox] - before[f["photo_id"]][oy, ox]).mean() < 2.0
    assert (server / "x_6.jpg").read_bytes() == lfw(X, 6).read_bytes()  # never written to
    data = _vault_bytes(home)
    assert not [n for n in needles if any(n in b for b in data)]  # templates, crops, unblurred copies
    folder, rows = _copies(v)
    assert {p.name for p in folder.iterdir()} == {sha for sha, kept in rows.items() if kept}
    staging = Path(v.settings.library_photos_root) / ".staging"
    assert not staging.exists() or not list(staging.iterdir())
    # The original files, uploaded again, are not indexed again (their hashes are remembered).
    again = c.post(f"{LIB}/uploads", files=_files(_uploads()[:3]), headers=auth(keys["enroller"]))
    assert [f["status"] for f in again.json()["files"]] == ["skipped"] * 3
    assert not [f for f in _faces(c, keys["searcher"]) if _is_x(f)]
    assert v.doctor().ok


def test_upload_after_optout_blurs_the_blocked_face_before_the_copy_is_written(up) -> None:
    v, c, keys, _ = up
    _optout(c, keys["enroller"], 4)
    later = _with_portrait(5)
    sha = hashlib.sha256(later).hexdigest()
    r = c.post(f"{LIB}/uploads", files=_files([("later.jpg", later)]), headers=auth(keys["enroller"]))
    assert r.status_code == 200, r.text
    body = r.json()
    (result,) = body["files"]
    assert result["status"] == "added" and result["sha256"] == sha  # the uploaded file's hash
    assert body["blocked"] == 1 and result["faces_blurred"] == 1 and result["faces"] == 3
    faces = [f for f in _faces(c, keys["searcher"]) if f["photo"] == "upload:later.jpg"]
    assert len(faces) == 3 and not [f for f in faces if _is_x(f)]  # X's face is not stored
    assert {f["photo_id"] for f in faces} == {result["photo_id"]}
    kept_sha = faces[0]["photo_sha256"]
    assert kept_sha != sha  # the row has the blurred copy's hash
    served = _image(c, keys["searcher"], result["photo_id"])  # and the copy verifies against it
    original = _decoded(later)
    left = _portrait_left()
    x_box = [left + 90, 90, left + 160, 160]  # inside the portrait's face (LFW photos are centred)
    _assert_blurred(original, served, x_box)
    for o in faces:  # the other faces are stored and as they were (up to JPEG re-encoding)
        oy, ox = _inside(o["box"])
        assert np.abs(served[oy, ox] - original[oy, ox]).mean() < 4.0
    folder, rows = _copies(v)
    assert (folder / kept_sha).exists() and not (folder / sha).exists()
    assert hashlib.sha256((folder / kept_sha).read_bytes()).hexdigest() == kept_sha
    assert {p.name for p in folder.iterdir()} == {s for s, kept in rows.items() if kept}
    staging = Path(v.settings.library_photos_root) / ".staging"
    assert not staging.exists() or not list(staging.iterdir())  # the staged copy did not survive
    assert not [b for b in _vault_bytes(Path(v.settings.home)) if later[2000:2064] in b]
    # The same file again is skipped: its hash is remembered.
    again = c.post(f"{LIB}/uploads", files=_files([("later.jpg", later)]), headers=auth(keys["enroller"]))
    assert again.json()["files"][0]["status"] == "skipped" and again.json()["faces"] == 0
    assert len([f for f in _faces(c, keys["searcher"]) if f["photo"] == "upload:later.jpg"]) == 3
    assert v.doctor().ok


@pytest.mark.slow
def test_killed_between_optout_commit_and_blur_leaves_no_unblurred_copy(up) -> None:
    v, c, keys, _ = up
    home = Path(v.settings.home)
    stored = [f for f in _faces(c, keys["searcher"]) if _is_x(f) and f["photo"].startswith("upload:")]
    assert len(stored) == 3
    before = {f["photo_id"]: _image(c, keys["searcher"], f["photo_id"]) for f in stored}
    originals = {f["photo_sha256"] for f in stored}
    folder, _ = _copies(v)
    assert all((folder / sha).exists() for sha in originals)

    proc = run_cli(str(home), "optout", str(lfw(X, 4)), crash_at="library_erase:committed")
    assert proc.returncode == -9, f"no SIGKILL: {proc.stderr[-2000:]}"
    assert all((folder / sha).exists() for sha in originals)  # what the killed process left

    with facevault.open(str(home)) as reopened:  # the blur completes at open
        folder, rows = _copies(reopened)
        on_disk = {p.name for p in folder.iterdir()}
        assert on_disk == {sha for sha, kept in rows.items() if kept}  # every copy has its row
        assert not on_disk & originals  # no unblurred copy of X is left
        staging = Path(reopened.settings.library_photos_root) / ".staging"
        assert not staging.exists() or not list(staging.iterdir())
        for f in stored:
            data, _ = reopened.libraries.library_photo("up", f["photo_id"])
            _assert_blurred(before[f["photo_id"]], _decoded(data), f["box"])
        assert reopened.doctor().ok
    unblurred = [d[2000:2064] for name, d in _uploads() if name != "blair.jpg"]
    assert not [n for n in unblurred if any(n in b for b in _vault_bytes(home))]
