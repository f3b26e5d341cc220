"""Photo libraries on real photos (shared LFW and FDDB): add a folder (resumable, de-duplicated, a bad
file does not stop it), people grouped, naming needs consent, search finds the photos with boxes and is
audited with its purpose, manual decisions survive re-clustering, erasure leaves no template, crop or
name bytes in the vault folder, opt-out reaches libraries and blocks later ingest, retention sweeps."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from facevault.clock import utcnow
from facevault.errors import ConsentError, PurposeRequiredError

from .conftest import data_path, lfw

IDENTITIES = {"Colin_Powell": 5, "Tony_Blair": 5, "Hugo_Chavez": 4, "Jacques_Chirac": 4}
FDDB_GROUP = ("2002", "08", "26", "big", "img_265.jpg")  # three faces
SECRET_NAME = "Zelda Quillfeather-Testperson"


def _folder(root: Path) -> Path:
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for name, n in IDENTITIES.items():
        for i in range(1, n + 1):
            shutil.copy(lfw(name, i), photos / f"{name}_{i}.jpg")
    shutil.copy(data_path("fddb", "images", *FDDB_GROUP), photos / "sub" / "group.jpg")
    shutil.copy(lfw("Colin_Powell", 1), photos / "copy_of_powell.jpg")  # same bytes: de-duplicated
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return photos


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A vault with library "fam" built once from the folder; each test works on its own copy."""
    import facevault

    root = tmp_path_factory.mktemp("library")
    photos = _folder(root)
    v = facevault.open(str(root / "home"), create=True)
    v.libraries.create_library("fam", purpose="family photo collection", basis="household", keep_crops=True)
    first = v.libraries.library_add("fam", [str(photos)], recursive=True, workers=1)
    v.close()
    return root / "home", photos, first


@pytest.fixture
def lib(built, tmp_path: Path):  # type: ignore[no-untyped-def]
    import facevault

    home, photos, first = built
    shutil.copytree(home, tmp_path / "vault")
    v = facevault.open(str(tmp_path / "vault"))
    yield v, photos, first
    v.close()


def _identity(path: str | None) -> str:
    name = Path(path or "").stem
    return name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name


def _central(face: dict) -> bool:
    """The face an LFW photo is of covers its centre (others in it are bystanders)."""
    x1, y1, x2, y2 = face["box"]
    return Path(face["photo"]).parent.name != "sub" and x1 < 125 < x2 and y1 < 125 < y2


def _people_by_identity(v) -> dict[str, set[int]]:  # type: ignore[no-untyped-def]
    out: dict[str, set[int]] = {}
    for p in v.libraries.library_people("fam", include_hidden=True):
        for f in v.libraries.library_person("fam", p["person"])["faces_list"]:
            if _central(f):
                out.setdefault(_identity(f["photo"]), set()).add(p["person"])
    return out


def _person_of(v, photo_name: str) -> int:  # type: ignore[no-untyped-def]
    for p in v.libraries.library_people("fam", include_hidden=True):
        faces = v.libraries.library_person("fam", p["person"])["faces_list"]
        if any(Path(f["photo"]).name == photo_name and _central(f) for f in faces):
            return int(p["person"])
    raise AssertionError(f"no person holds {photo_name}")


def test_add_is_resumable_deduplicated_and_groups_people(lib) -> None:
    v, photos, first = lib
    n_lfw = sum(IDENTITIES.values())
    assert first["photos"] == n_lfw + 3 and first["added"] == n_lfw + 1  # LFW + the group photo
    assert first["skipped"] == 1 and first["failed"] == 1  # the copy; the broken file did not stop it
    assert first["faces"] >= n_lfw + 3  # at least one face per LFW photo, three in the group photo
    again = v.libraries.library_add("fam", [str(photos)], recursive=True, workers=1)
    assert again["added"] == 0 and again["faces"] == 0 and again["skipped"] == again["photos"]
    grouped = _people_by_identity(v)
    # No person holds two identities (no wrong merge); each identity is mostly one person.
    holders: dict[int, set[str]] = {}
    for ident, people in grouped.items():
        for p in people:
            holders.setdefault(p, set()).add(ident)
    lfw_people = {p: ids for p, ids in holders.items() if ids & set(IDENTITIES)}
    assert all(len(ids) == 1 for ids in lfw_people.values()), lfw_people
    assert all(len(grouped[name]) <= 2 for name in IDENTITIES), grouped
    assert len(grouped["Colin_Powell"]) == 1
    entry = v.audit_entries(5, action="library.add")[-1]
    assert entry["purpose"] == "family photo collection" and entry["details"]["library"] == "fam"
    shown = v.libraries.library_person("fam", _person_of(v, "Colin_Powell_1.jpg"))
    face = shown["faces_list"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["detector_score"] > 0
    assert v.libraries.library_face_crop("fam", face["face_id"])[1] == "image/jpeg"  # keep_crops: a thumbnail


def test_naming_needs_consent_and_search_is_audited(lib) -> None:
    v, _, _ = lib
    powell = _person_of(v, "Colin_Powell_2.jpg")
    with pytest.raises(ConsentError):
        v.libraries.library_name_person("fam", powell, "Colin Powell", purpose="family album")  # no evidence
    named = v.libraries.library_name_person(
        "fam", powell, "Colin Powell", purpose="family album", consent_text="yes"
    )
    assert named["consent_id"] > 0
    assert v.libraries.library_person("fam", powell)["consent"]["purpose"] == "family album"
    with pytest.raises(ConsentError):  # once named, a second consent is not stacked on the same person
        v.libraries.library_name_person("fam", powell, "Other", purpose="x", consent_text="y")

    probe = str(lfw("Colin_Powell", 9))  # a photo not in the library
    with pytest.raises(PurposeRequiredError):
        v.libraries.library_search("fam", probe, purpose=" ")
    res = v.libraries.library_search("fam", probe, purpose="find grandpa's photos", case_id="c-1")
    face = res["faces"][0]
    assert face["person"] == powell and face["person_label"] == "Colin Powell"
    found = {Path(m["photo"]).name for m in face["matches"]}
    assert {f"Colin_Powell_{i}.jpg" for i in range(1, 6)} <= found
    assert not any(n.startswith(("Tony_Blair", "Hugo_Chavez", "Jacques_Chirac")) for n in found)
    top = face["matches"][0]
    assert len(top["box"]) == 4 and top["similarity"] >= res["threshold"] and 0 < top["estimated_fmr"] < 1e-2
    entry = v.audit_entries(1, action="library.search")[0]
    assert entry["purpose"] == "find grandpa's photos" and entry["case_id"] == "c-1"
    assert entry["seq"] == res["audit_seq"] and entry["probe_sha256"] == res["probe_sha256"]
    assert entry["details"]["matches"][0][0] == powell


def test_manual_decisions_survive_recluster(lib) -> None:
    v, _, _ = lib
    powell = _person_of(v, "Colin_Powell_1.jpg")
    chavez = _person_of(v, "Hugo_Chavez_1.jpg")
    chirac = _person_of(v, "Jacques_Chirac_1.jpg")
    faces = v.libraries.library_person("fam", powell)["faces_list"]
    split_off = faces[0]["face_id"]
    new = v.libraries.library_split("fam", powell, [split_off])["new_person"]
    moved = v.libraries.library_person("fam", chirac)["faces_list"][0]["face_id"]
    v.libraries.library_move_face("fam", moved, chavez)  # a wrong decision on purpose: kept all the same
    blair = sorted(_people_by_identity(v)["Tony_Blair"])
    merged = v.libraries.library_merge("fam", chavez, blair[0])["person"]
    assert merged == chavez
    v.libraries.library_hide("fam", chirac)
    assert chirac not in {p["person"] for p in v.libraries.library_people("fam")}

    report = v.libraries.library_recluster("fam")
    assert report["faces"] >= 21 and report["pinned_faces"] >= 3
    assert {f["face_id"] for f in v.libraries.library_person("fam", new)["faces_list"]} == {split_off}
    assert split_off not in {f["face_id"] for f in v.libraries.library_person("fam", powell)["faces_list"]}
    chavez_faces = {Path(f["photo"]).stem for f in v.libraries.library_person("fam", chavez)["faces_list"]}
    assert any(s.startswith("Tony_Blair") for s in chavez_faces)  # the merge held
    assert moved in {
        f["face_id"] for f in v.libraries.library_person("fam", chavez)["faces_list"]
    }  # the move held
    assert chirac not in {p["person"] for p in v.libraries.library_people("fam")}  # still hidden
    entry = v.audit_entries(1, action="library.recluster")[0]
    assert entry["details"]["pinned_faces"] == report["pinned_faces"]


def _vault_files(v) -> list[Path]:  # type: ignore[no-untyped-def]
    return [p for p in v.settings.home.rglob("*") if p.is_file() and "keys" not in p.parts]


def _scan(v, needles: list[bytes]) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [(p.name, i) for p in _vault_files(v) for i, n in enumerate(needles) if n in p.read_bytes()]


def test_erasing_a_person_leaves_no_template_crop_or_name_bytes(lib) -> None:
    v, photos, _ = lib
    powell = _person_of(v, "Colin_Powell_3.jpg")
    v.libraries.library_name_person(
        "fam", powell, SECRET_NAME, purpose="family album", consent_text="signed by her"
    )
    ids = [f["face_id"] for f in v.libraries.library_person("fam", powell)["faces_list"]]
    marks = ",".join("?" * len(ids))
    with sqlite3.connect(v.settings.db_path) as db:
        blobs = [r[0] for r in db.execute(f"SELECT vector FROM library_faces WHERE id IN ({marks})", ids)]
        crop_blobs = [
            r[0] for r in db.execute(f"SELECT image FROM library_crops WHERE face_id IN ({marks})", ids)
        ]
        photos_before = db.execute("SELECT count(*) FROM library_photos").fetchone()[0]
    pixels = v.context.decode(str(photos / "Colin_Powell_3.jpg")).pixels
    raw = v.pipeline("dlib-resnet-v1").analyze(pixels)[0].embedding
    protected = v.context.current_key().protect(raw)
    needles = [
        raw.astype("<f4").tobytes()[:256],
        protected.astype("<f4").tobytes()[:256],
        SECRET_NAME.encode(),
    ]
    needles += [b[16:80] for b in blobs] + [b[16:80] for b in crop_blobs]
    before = _scan(v, needles)
    assert {i for _, i in before} >= {2, 3}  # the name and the sealed templates are there before
    assert not [hit for hit in before if hit[1] == 0]  # never a plain template

    receipt = v.libraries.library_erase_person("fam", powell)
    assert receipt["faces_erased"] == len(ids) and receipt["crops_erased"] == len(crop_blobs) == len(ids)
    assert receipt["was_named"] and len(receipt["consent_evidence_sha256"]) == 64
    assert _scan(v, needles) == []
    with sqlite3.connect(v.settings.db_path) as db:  # the photos themselves stay
        assert db.execute("SELECT count(*) FROM library_photos").fetchone()[0] == photos_before
    entry = v.audit_entries(1, action="library.erase")[0]
    assert entry["details"]["faces_erased"] == len(ids) and SECRET_NAME not in str(entry)
    res = v.libraries.library_search("fam", str(lfw("Colin_Powell", 9)), purpose="after erasure")
    assert not any(
        Path(m["photo"]).name.startswith("Colin_Powell") for f in res["faces"] for m in f["matches"]
    )


def test_optout_reaches_libraries_and_blocks_later_ingest(lib, tmp_path: Path) -> None:
    v, _, _ = lib
    report = v.optout(str(lfw("Colin_Powell", 9)))
    assert report["library_people_erased"] and all(r[0] == "fam" for r in report["library_people_erased"])
    left = _people_by_identity(v)
    assert "Colin_Powell" not in left and "Tony_Blair" in left  # only the person who opted out
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(lfw("Colin_Powell", 10), later / "p.jpg")
    shutil.copy(lfw("Tony_Blair", 10), later / "t.jpg")
    added = v.libraries.library_add("fam", [str(later)], workers=1)
    assert added["added"] == 2 and added["blocked"] == 1 and added["faces"] >= 1  # Blair (and bystanders)
    assert "Colin_Powell" not in _people_by_identity(v)


def test_retention_sweeps_library_faces(lib) -> None:
    v, _, _ = lib
    powell = _person_of(v, "Colin_Powell_1.jpg")
    soon = (utcnow() + timedelta(days=2)).date()
    v.libraries.library_name_person("fam", powell, "Powell", purpose="album", consent_text="ok", expires=soon)
    assert v.libraries.library_retention_due() == []
    due = v.libraries.library_retention_due(utcnow() + timedelta(days=3))
    assert [d for d in due if d["person"] == powell] == [
        {"library": "fam", "person": powell, "reason": "consent_expired"}
    ]
    sweep = v.retention_sweep(utcnow() + timedelta(days=3))
    assert [r["person"] for r in sweep["library_erased"]] == [powell]
    assert "Colin_Powell" not in _people_by_identity(v) and "Tony_Blair" in _people_by_identity(v)
    everyone = v.retention_sweep(utcnow() + timedelta(days=1200))  # past the library's retention period
    assert everyone["library_erased"] and v.libraries.library_people("fam", include_hidden=True) == []


def test_key_rotation_reseals_library_faces_and_crops(lib) -> None:
    """After a rotation the old key is forgotten: library faces and crops must be readable under the new
    one, and a search must still find the person's photos."""
    v, _, _ = lib
    powell = _person_of(v, "Colin_Powell_2.jpg")
    face_id = next(
        f["face_id"] for f in v.libraries.library_person("fam", powell)["faces_list"] if _central(f)
    )
    crop_before = v.libraries.library_face_crop("fam", face_id)
    probe = str(lfw("Colin_Powell", 9))
    before = v.libraries.library_search("fam", probe, purpose="before rotation")["faces"][0]
    rotated = v.rotate_keys()
    assert crop_before is not None  # this library keeps crops
    assert rotated.library_faces > 0 and rotated.library_crops > 0
    assert list(v._ctx.keys.template_keys) == [rotated.to_version]  # the old key is gone
    after = v.libraries.library_search("fam", probe, purpose="after rotation")["faces"][0]
    assert after["person"] == before["person"] == powell
    assert {m["photo"] for m in after["matches"]} == {m["photo"] for m in before["matches"]}
    assert v.libraries.library_face_crop("fam", face_id) == crop_before
