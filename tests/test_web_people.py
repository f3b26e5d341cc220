"""Chromium: the People page of a photo library, on real photos (shared LFW and one FDDB group photo).

An admin creates a library in the UI; an enroller uploads eleven LFW photos of three people, the FDDB
group photo, a broken file and one over the server's size limit (refused before it is sent), in batches
of the server's max_files_per_request, and watches the progress bar finish; the people grid shows the
groups; the same folder again adds nothing. The enroller opens a person (every photo with the face boxed
where the API says it is, enlarged on click), names them with consent ("given by" must be filled in),
splits a face off another person with "not this person" and merges it back (picked from a list), moves a
face to another person and back, and hides a stranger. A searcher searches with a new photo of the named
person and sees them and their photos, ranked, boxed, with similarity and the false-match rate in words,
and "nobody matches" for a stranger; the search is audited with its purpose. The admin erases the person,
blurring their face in the kept copies: the grid no longer shows them and the face in the photo is
blurred. The views also at 390x844 without sideways scrolling; no console errors or failed requests.
Screenshots as in tests/test_web.py."""

from __future__ import annotations

import hashlib
import io
import math
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from facevault.api import create_app
from facevault.config import ApiSettings

from . import test_api_support as support
from . import test_web
from .conftest import data_path, lfw
from .test_api_support import auth, live_server
from .test_web import _shot, _sign_in, pytestmark  # noqa: F401
from .test_web_review import _loaded, _no_sideways_scroll

role_keys, browser = support.role_keys, test_web.browser  # fixtures

IDENTITIES = {"Colin_Powell": 4, "Tony_Blair": 4, "Hugo_Chavez": 3}
FDDB_GROUP = ("2002", "08", "26", "big", "img_265.jpg")  # three strangers
PER_REQUEST = 4
MAX_BYTES = 200_000


@pytest.fixture
def api_app(vault):  # type: ignore[no-untyped-def]
    """Small request limits, so the upload goes in several batches and one file is over the size limit."""
    settings = ApiSettings(
        rate_per_minute=1_000_000,
        rate_burst=1_000_000,
        max_files_per_request=PER_REQUEST,
        max_upload_bytes=MAX_BYTES,
    )
    return create_app(vault, settings=settings)


def _photos(folder: Path) -> list[Path]:
    folder.mkdir()
    out = []
    for name, n in IDENTITIES.items():
        for i in range(1, n + 1):
            out.append(Path(shutil.copy(lfw(name, i), folder)))
    out.append(Path(shutil.copy(data_path("fddb", "images", *FDDB_GROUP), folder / "group.jpg")))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    huge = folder / "huge.png"
    noise = np.random.default_rng(7).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    huge.write_bytes(buf.getvalue())
    assert huge.stat().st_size > MAX_BYTES
    (folder / "notes.txt").write_text("not a photo: left out of a folder upload")
    return [*out, broken, huge]


def _faces_of(vault, person: int) -> list[int]:  # type: ignore[no-untyped-def]
    return [f["face_id"] for f in vault.libraries.library_person("family", person)["faces_list"]]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)


def _identities(api: httpx.Client, files: list[Path]) -> dict[str, int]:
    """Which person holds each LFW identity's photos (from the API, by the photos' SHA-256)."""
    by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p.stem.rsplit("_", 1)[0] for p in files}
    found: dict[str, set[int]] = {}
    for p in api.get("/api/v1/libraries/family/people", params={"hidden": "true"}).json():
        person = api.get(f"/api/v1/libraries/family/people/{p['person']}").json()
        for f in person["faces_list"]:
            found.setdefault(by_sha.get(f["photo_sha256"], "?"), set()).add(p["person"])
    return {name: min(found[name]) for name in IDENTITIES if name in found}


def _boxes_match_api(page, faces: list[dict]) -> None:  # type: ignore[no-untyped-def]
    """Each photo's overlay box sits where the API's box is, relative to the photo shown."""
    from playwright.sync_api import expect

    cards = page.get_by_test_id("person-photo")
    expect(cards).to_have_count(len(faces))
    by_face = {f["face_id"]: f for f in faces}
    for i in range(cards.count()):
        card = cards.nth(i)
        face = by_face[int(card.get_attribute("data-face") or 0)]
        img = card.locator("img.lib-photo")
        expect(img).to_be_visible()
        expect(card.get_by_test_id("face-box")).to_have_count(1)
        shown = img.bounding_box()
        box = card.get_by_test_id("face-box").bounding_box()
        natural = img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]")
        w = face.get("image_width") or natural[0]
        h = face.get("image_height") or natural[1]
        x1, y1, x2, y2 = face["box"]
        assert shown and box and box["width"] > 10, (shown, box)
        assert abs((box["x"] - shown["x"]) / shown["width"] - x1 / w) < 0.03, (box, shown, face)
        assert abs((box["y"] - shown["y"]) / shown["height"] - y1 / h) < 0.03, (box, shown, face)
        assert abs(box["width"] / shown["width"] - (x2 - x1) / w) < 0.03, (box, shown, face)
        assert abs(box["height"] / shown["height"] - (y2 - y1) / h) < 0.03, (box, shown, face)


def test_people_page_upload_name_merge_hide_search_erase_in_chromium(
    browser, api_app, role_keys, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    files = _photos(tmp_path / "photos")
    errors: list[str] = []
    uploads: list[str] = []
    vault = api_app.state.vault
    with live_server(api_app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: uploads.append(r.url) if r.url.endswith("/uploads") else None)
        page.goto(f"{url}/signin")

        # admin: a library with its purpose, legal basis, retention and face thumbnails
        _sign_in(page, role_keys["admin"])
        page.get_by_role("link", name="People").click()
        expect(page.get_by_test_id("no-library")).to_contain_text("No photo library yet")
        page.get_by_label("Library name").fill("family")
        page.get_by_label("Library purpose").fill("family photo archive")
        page.get_by_label("Legal basis").fill("household use")
        page.get_by_label("Retention (days after a person is last seen)").fill("730")
        expect(page.get_by_label("Keep face thumbnails", exact=False)).not_to_be_checked()
        page.get_by_label("Keep face thumbnails", exact=False).check()
        page.get_by_role("button", name="Create library").click()
        expect(page.locator("#library")).to_have_value("family")
        expect(page.get_by_test_id("no-people")).to_contain_text("Add photos")
        lib = next(x for x in vault.libraries.list_libraries() if x["name"] == "family")
        assert (lib["purpose"], lib["legal_basis"], lib["retention_days"], lib["keep_crops"]) == (
            "family photo archive",
            "household use",
            730,
            True,
        )

        # enroller: upload in batches; the bar finishes; failures are listed by the user's file name
        _sign_in(page, role_keys["enroller"])
        page.get_by_role("link", name="People").click()
        page.get_by_label("Photos to add").set_input_files([str(p) for p in files])
        page.get_by_role("button", name="Add photos").click()
        line = page.get_by_test_id("upload-line")
        expect(line).to_contain_text(f"Done: {len(files)} of {len(files)} photos", timeout=180_000)
        expect(line).to_contain_text("12 added, 0 already in the library, 2 failed")
        bar = page.locator("#upload-progress")
        assert bar.evaluate("(b) => [b.value, b.max]") == [len(files), len(files)]
        failures = page.get_by_test_id("upload-failures")
        expect(failures.locator("tbody tr")).to_have_count(2)
        expect(failures.locator("tr").filter(has_text="huge.png")).to_contain_text("over the server's")
        expect(failures.locator("tr").filter(has_text="broken.jpg")).to_be_visible()
        assert len(uploads) == math.ceil((len(files) - 1) / PER_REQUEST), uploads  # huge.png never sent
        faces_found = int(re.search(r"(\d+) faces found", line.inner_text()).group(1))  # type: ignore[union-attr]
        assert faces_found >= 11 + 3

        with httpx.Client(base_url=url, headers=auth(role_keys["enroller"]), timeout=60) as api:
            people = api.get("/api/v1/libraries/family/people").json()
            who = _identities(api, files)
        assert set(who) == set(IDENTITIES), who
        cards = page.get_by_test_id("person-card")
        expect(cards).to_have_count(len(people))
        assert len(people) >= len(IDENTITIES) + 3  # three strangers in the group photo
        colin = who["Colin_Powell"]
        colin_card = page.locator(f"[data-testid=person-card][data-person='{colin}']")
        expect(colin_card).to_contain_text("4 faces in 4 photos")
        expect(colin_card.locator("img.face-thumb")).to_be_visible()  # the library keeps thumbnails
        _loaded(page)
        _shot(page, "people")

        # the same folder again: its photo files only, every one already in the library
        page.get_by_label("Or a whole folder").set_input_files(str(tmp_path / "photos"))
        page.get_by_role("button", name="Add photos").click()
        expect(line).to_contain_text(f"Done: {len(files)} of {len(files)} photos", timeout=180_000)
        expect(line).to_contain_text(re.compile(r" 0 added, 1[23] already in the library"))
        expect(cards).to_have_count(len(people))

        # a person: every photo with the face boxed where the API says; enlarge; name with consent
        page.get_by_role("link", name=re.compile(rf"^person #{colin}, 4 faces in 4 photos")).click()
        expect(page).to_have_url(re.compile(rf"/people\?library=family&person={colin}$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(f"person #{colin}")
        with httpx.Client(base_url=url, headers=auth(role_keys["enroller"]), timeout=60) as api:
            shown = api.get(f"/api/v1/libraries/family/people/{colin}").json()
        _loaded(page)
        _boxes_match_api(page, shown["faces_list"])
        page.get_by_role("button", name=re.compile(r"^Enlarge: Colin_Powell_0001")).click()
        expect(page.locator("#zoom")).to_be_visible()
        expect(page.locator("#zoom-img")).to_have_attribute("src", re.compile("^blob:"))
        page.locator("#zoom").get_by_role("button", name="Close").click()

        page.get_by_label("Name", exact=True).fill("Colin Powell")
        page.get_by_label("Consent purpose").fill("family photo archive")
        page.get_by_label("Consent text").fill("Signed release, kept in the family binder")
        page.get_by_role("button", name="Name with consent").click()
        expect(page.locator("#consent-by:invalid")).to_have_count(
            1
        )  # "given by" is never the name by default
        assert api_app.state.vault.libraries.library_person("family", colin)["named"] is False
        page.get_by_label("Consent given by").fill("Colin Powell (signed)")
        page.get_by_role("button", name="Name with consent").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Colin Powell")
        record = page.get_by_test_id("consent-record")
        expect(record).to_contain_text("Colin Powell (signed)")
        expect(record).to_contain_text("family photo archive")
        consent = vault.libraries.library_person("family", colin)["consent"]
        assert consent["granted_by"] == "Colin Powell (signed)" and consent["evidence_kind"] == "text"
        _loaded(page)
        _shot(page, "person")

        # the feature face: another of the person's faces becomes the one the grid shows
        current = vault.libraries.library_person("family", colin)["feature_face"]
        other = next(f["face_id"] for f in shown["faces_list"] if f["face_id"] != current)
        page.get_by_role("button", name=f"Use face {other} as the feature face").click()
        expect(page.locator("#toast")).to_contain_text(f"Face {other} now shows Colin Powell")
        assert vault.libraries.library_person("family", colin)["feature_face"] == other
        expect(page.get_by_role("button", name=f"Use face {other} as the feature face")).to_have_count(0)
        expect(page.get_by_role("button", name=f"Use face {current} as the feature face")).to_have_count(1)

        # "not this person" splits a face off; merging (picked from a list) puts it back
        tony = who["Tony_Blair"]
        page.get_by_role("link", name="← All people in family").click()
        page.get_by_role("link", name=re.compile(rf"^person #{tony}, ")).click()
        first = page.get_by_test_id("person-photo").first
        face_id = int(first.get_attribute("data-face") or 0)
        before = vault.libraries.library_person("family", tony)["faces"]
        first.get_by_role("button", name=f"Not person #{tony}: face {face_id}").click()
        expect(page.locator("#toast")).to_contain_text(f"Face {face_id} is no longer person #{tony}")
        expect(page.get_by_test_id("person-photo")).to_have_count(before - 1)
        alone = next(
            p["person"]
            for p in vault.libraries.library_people("family")
            if face_id
            in [f["face_id"] for f in vault.libraries.library_person("family", p["person"])["faces_list"]]
        )
        assert alone != tony
        page.get_by_label("Same person as this one").select_option(str(alone))
        page.get_by_role("button", name="Merge into this person").click()
        expect(page.locator("#toast")).to_contain_text(
            f"Merged person #{alone} into person #{tony}: 1 face moved"
        )
        expect(page.get_by_test_id("person-photo")).to_have_count(before)
        assert alone not in [
            p["person"] for p in vault.libraries.library_people("family", include_hidden=True)
        ]

        # move a face to another person, picked from a list, and back
        hugo = who["Hugo_Chavez"]
        page.goto(f"{url}/people?library=family&person={hugo}")
        card = page.get_by_test_id("person-photo").first
        moved = int(card.get_attribute("data-face") or 0)
        card.get_by_role("button", name=f"Move face {moved} to another person").click()
        card.get_by_label(f"Person to move face {moved} to").select_option(str(tony))
        card.get_by_role("button", name="Move", exact=True).click()
        expect(page.locator("#toast")).to_contain_text(f"Face {moved} moved to person #{tony}")
        expect(page.get_by_test_id("person-photo")).to_have_count(2)
        assert moved in _faces_of(vault, tony) and moved not in _faces_of(vault, hugo)
        page.goto(f"{url}/people?library=family&person={tony}")
        card = page.locator(f"[data-testid=person-photo][data-face='{moved}']")
        card.get_by_role("button", name=f"Move face {moved} to another person").click()
        card.get_by_label(f"Person to move face {moved} to").select_option(str(hugo))
        card.get_by_role("button", name="Move", exact=True).click()
        expect(page.get_by_test_id("person-photo")).to_have_count(before)
        assert moved in _faces_of(vault, hugo)

        # hide a stranger of the group photo: gone from the grid, back with "Show hidden people"
        stranger = next(
            p["person"] for p in people if p["person"] not in who.values() and p["person"] != alone
        )
        page.goto(f"{url}/people?library=family&person={stranger}")  # a deep link
        page.get_by_role("button", name="Hide this person").click()
        expect(page.get_by_role("button", name="Show this person again")).to_be_visible()
        page.get_by_role("link", name="← All people in family").click()
        expect(page.locator(f"[data-testid=person-card][data-person='{stranger}']")).to_have_count(0)
        expect(page.get_by_test_id("person-card")).to_have_count(len(people) - 1)
        page.get_by_label("Show hidden people").check()
        hidden_card = page.locator(f"[data-testid=person-card][data-person='{stranger}']")
        expect(hidden_card).to_contain_text("hidden")

        # phone width: the grid and a person, without sideways scrolling
        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_label("Show hidden people").uncheck()
        expect(page.get_by_test_id("person-card")).to_have_count(len(people) - 1)
        _loaded(page)
        _no_sideways_scroll(page)
        _shot(page, "people-phone")
        page.get_by_role("link", name=re.compile(r"^Colin Powell, ")).click()
        expect(page.get_by_test_id("person-photo")).to_have_count(4)
        _loaded(page)
        _no_sideways_scroll(page)
        _shot(page, "person-phone")
        page.set_viewport_size({"width": 1280, "height": 900})

        # searcher: a new photo of the named person finds them and every photo they are in
        _sign_in(page, role_keys["searcher"])
        page.get_by_role("link", name="People").click()
        expect(page.get_by_role("button", name="Add photos")).to_have_count(0)  # a searcher adds nothing
        page.get_by_label("Photo to search with").set_input_files(str(lfw("Colin_Powell", 6)))
        page.get_by_label("Purpose of this search").fill("browser test: photos of Colin")
        page.get_by_label("Case id (optional)").fill("LIB-1")
        page.get_by_role("button", name="Search the library").click()
        expect(page.get_by_test_id("lib-summary")).to_have_text("Found Colin Powell")
        matches = page.get_by_test_id("lib-person").get_by_test_id("lib-match")
        expect(matches).to_have_count(4)
        expect(matches.first).to_contain_text(re.compile(r"^1\. similarity 0\.9\d\d"))
        expect(matches.first).to_contain_text(
            re.compile(r"Different people score this high about 1 in [\d,.]+")
        )
        expect(matches.locator("img.lib-photo")).to_have_count(4)
        expect(matches.get_by_test_id("face-box")).to_have_count(4)
        sims = [float(re.search(r"similarity (\d\.\d+)", t).group(1)) for t in matches.all_inner_texts()]  # type: ignore[union-attr]
        assert sims == sorted(sims, reverse=True)
        expect(page.get_by_test_id("lib-audit")).to_contain_text("browser test: photos of Colin")
        entry = vault.audit_entries(5, action="library.search")[0]
        assert entry["purpose"] == "browser test: photos of Colin" and entry["case_id"] == "LIB-1"
        _loaded(page)
        _shot(page, "library-search")
        page.set_viewport_size({"width": 390, "height": 844})
        _no_sideways_scroll(page)
        _shot(page, "library-search-phone")
        page.set_viewport_size({"width": 1280, "height": 900})

        # a stranger: clearly nobody
        page.get_by_label("Photo to search with").set_input_files(str(lfw("Andre_Agassi", 1)))
        page.get_by_role("button", name="Search the library").click()
        expect(page.get_by_test_id("lib-summary")).to_have_text("Nobody in this library matches")
        expect(page.get_by_test_id("lib-no-match").first).to_contain_text("nobody in this library matches")
        expect(page.get_by_test_id("lib-match")).to_have_count(0)

        # admin: erase the named person; the photos stay; the grid no longer shows them
        _sign_in(page, role_keys["admin"])
        page.get_by_role("link", name="People").click()
        page.get_by_role("link", name=re.compile(r"^Colin Powell, ")).click()
        photo_id, box = shown["faces_list"][0]["photo_id"], shown["faces_list"][0]["box"]
        with httpx.Client(base_url=url, headers=auth(role_keys["admin"]), timeout=60) as api:
            original = _pixels(api.get(f"/api/v1/libraries/family/photos/{photo_id}").content)
        page.get_by_role("button", name="Erase this person…").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("stay in the library")
        expect(dialog.get_by_label("Keep them as they are")).to_be_checked()
        dialog.get_by_label(re.compile("^Keep them, with this person's face blurred")).check()
        dialog.get_by_role("button", name="Erase permanently").click()
        expect(page).to_have_url(re.compile(r"/people\?library=family$"))
        expect(page.locator("#toast")).to_contain_text("Erased Colin Powell")
        expect(page.locator("#toast")).to_contain_text("4 photos kept with the face blurred")
        expect(page.get_by_test_id("people-grid")).not_to_contain_text("Colin Powell")
        expect(page.get_by_test_id("person-card")).to_have_count(len(people) - 2)
        left = vault.libraries.library_people("family", include_hidden=True)
        assert colin not in [p["person"] for p in left] and not any(p["named"] for p in left)
        receipt = vault.audit_entries(5, action="library.erase")[0]["details"]
        assert receipt["photos_blurred"] == 4, receipt
        with httpx.Client(base_url=url, headers=auth(role_keys["admin"]), timeout=60) as api:
            after = _pixels(api.get(f"/api/v1/libraries/family/photos/{photo_id}").content)
        x1, y1, x2, y2 = (round(v) for v in box)
        changed = np.abs(after - original).mean(axis=2)
        inside, outside = changed[y1:y2, x1:x2].mean(), changed[: max(1, y1 - 10), :].mean()
        assert inside > 5 * max(outside, 1.0), (inside, outside)  # the face is blurred, the rest kept
        page.close()
    assert not errors, errors
