"""End-to-end in a real headless Chromium (Debian's chromium driven by Playwright) against a real
uvicorn server on loopback: sign in, enroll from photos, search (match and no match), erase, audit.
Takes a screenshot of each page; with FACEVAULT_SCREENSHOTS=1 they are saved to docs/screenshots/ (the
ones in the docs), otherwise to a temporary folder, so a test run leaves the working tree unchanged."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

from . import test_api_support as support
from .conftest import REPO, lfw
from .test_api_support import auth, live_server

api_app, role_keys = support.api_app, support.role_keys  # fixtures

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = (
    REPO / "docs" / "screenshots"
    if os.environ.get("FACEVAULT_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "facevault-screenshots"
)

pytestmark = [
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="chromium is not installed (.ci/install-browser.sh)"
    ),
]


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _blank_photo(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (240, 240), (150, 180, 210)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    return path


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _search(page, photo: Path) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Photo to search with").set_input_files(str(photo))
    page.get_by_label("Purpose").fill("browser test: find a person")
    page.get_by_label("Case id (optional)").fill("E2E-1")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#results h2").first.wait_for()


def _sign_in(page, key: str) -> None:  # type: ignore[no-untyped-def]
    if page.get_by_role("button", name="Sign out").count():
        page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("who").wait_for()


def _review(page, decision: str, name: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.get_by_role("link", name="Review").click()
    page.get_by_label("Case id", exact=True).fill("E2E-1")
    page.get_by_role("button", name="Show candidates").click()
    page.get_by_role("button", name=f"{decision} {name}").click()
    state = page.get_by_test_id("review-candidate").filter(has_text=name).get_by_test_id("review-state")
    expect(state).to_contain_text(expected)


def test_sign_in_enroll_search_erase_and_audit_in_chromium(
    browser, api_app, role_keys, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with live_server(api_app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/")
        expect(page).to_have_url(f"{url}/signin")
        _shot(page, "signin")
        page.get_by_label("API key").fill("fvk_00000000_wrongwrongwrongwrongwrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
        page.get_by_label("API key").fill(role_keys["admin"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("who")).to_have_text("admin test key (admin)")

        # an admin creates the collection, an enroller's form adds a consented subject and photos
        page.get_by_role("link", name="Subjects").click()
        page.get_by_text("New collection").click()
        page.get_by_label("Collection name").fill("staff")
        expect(page.locator("#keep-crops")).not_to_be_checked()  # no face images kept by default
        page.get_by_role("button", name="Create collection").click()
        expect(page.locator("#collection")).to_have_value("staff")
        page.get_by_text("Add a subject (with consent)").click()
        page.get_by_label("Name", exact=True).fill("Tony Blair")
        page.get_by_label("Consent purpose").fill("building access")
        page.get_by_label("Consent text").fill("Signed consent form #12, kept by HR")
        page.get_by_label("Consent given by").fill("Tony Blair")
        page.get_by_label("External id (optional)").fill("EMP-12")
        page.get_by_role("button", name="Add subject").click()
        expect(page.locator("#subject-title")).to_have_text("Tony Blair")
        photos = [str(lfw("Tony_Blair", n)) for n in (1, 2)] + [str(_blank_photo(tmp_path / "sky.jpg"))]
        page.get_by_label("Photos of this person (one face each)").set_input_files(photos)
        page.get_by_role("button", name="Enroll photos").click()
        results = page.locator("#enroll-results")
        expect(results).to_contain_text("2 enrolled, 1 rejected", timeout=60_000)  # a busy CI machine
        expect(results).to_contain_text("No face found")
        expect(page.locator("#subject-detail img")).to_have_count(2)  # thumbnails of the new samples
        _shot(page, "subjects")

        # a collection that keeps encrypted face crops (so it can move to another pack), set in the form
        page.get_by_text("New collection").click()
        page.get_by_label("Collection name").fill("archive")
        page.get_by_label("Model pack (optional)").fill("dlib-resnet-v1")
        page.locator("#keep-crops").check()
        page.get_by_role("button", name="Create collection").click()
        expect(page.locator("#collection")).to_have_value("archive")
        with httpx.Client(base_url=url, headers=auth(role_keys["admin"]), timeout=60) as api:
            shown = {c: api.get(f"/api/v1/collections/{c}").json() for c in ("staff", "archive")}
        assert (shown["staff"]["keep_crops"], shown["archive"]["keep_crops"]) == (False, True)
        page.locator("#collection").select_option("staff")

        # a second person, enrolled over the API, so "ranked first" means something
        with httpx.Client(base_url=url, headers=auth(role_keys["enroller"]), timeout=60) as api:
            r = api.post(
                "/api/v1/collections/staff/subjects",
                json={"name": "Hugo Chavez", "purpose": "building access", "consent_text": "form #13"},
            )
            api.post(
                f"/api/v1/collections/staff/subjects/{r.json()['id']}/samples",
                files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in (lfw("Hugo_Chavez", 1),)],
            )

        # search: the same person is ranked first, with a thumbnail of the matched sample
        _search(page, lfw("Tony_Blair", 5))
        expect(page.locator(".facebox")).to_have_count(1)
        first = page.get_by_test_id("candidate").first
        expect(first).to_contain_text("1. Tony Blair")
        expect(first.locator("img")).not_to_have_count(0)
        _shot(page, "search")

        # a stranger: an explicit "no match in this gallery"
        _search(page, lfw("Colin_Powell", 1))
        expect(page.get_by_test_id("no-match")).to_contain_text("No match in this gallery")
        _shot(page, "search-no-match")

        # review: the search's candidate waits for two different reviewer keys (EU AI Act Art. 14(5))
        second = api_app.state.vault.create_api_key("reviewer", "second reviewer")[0]
        _sign_in(page, role_keys["reviewer"])
        _review(page, "Confirm", "Tony Blair", "Pending: 1 of 2 confirmations (reviewer test key (key:")
        expect(page.get_by_test_id("review-candidate").filter(has_text="Tony Blair")).to_contain_text(
            "You decided: confirm."
        )
        _shot(page, "review")
        _sign_in(page, second)
        _review(page, "Confirm", "Tony Blair", "Confirmed by reviewer test key")
        expect(page.get_by_test_id("review-state").first).to_contain_text("second reviewer (key:")
        _shot(page, "review-confirmed")
        _sign_in(page, role_keys["admin"])

        # erase with confirmation; the search then comes back empty
        page.get_by_role("link", name="Subjects").click()
        page.get_by_label("Find a subject").fill("tony")
        page.get_by_role("button", name="Tony Blair").click()
        page.get_by_role("button", name="Erase subject…").click()
        expect(page.get_by_role("dialog")).to_contain_text("Erase Tony Blair?")
        _shot(page, "erase-confirm")
        page.get_by_role("button", name="Erase permanently").click()
        expect(page.locator("#subject-detail")).to_contain_text("Erased Tony Blair: 2 samples removed.")
        _search(page, lfw("Tony_Blair", 5))
        expect(page.get_by_test_id("no-match")).to_contain_text("No match in this gallery")

        # the audit log shows every search with who asked and why, and the chain verifies
        page.get_by_role("link", name="Audit").click()
        expect(page.get_by_test_id("chain-ok")).to_contain_text("Hash chain verified")
        page.get_by_label("Action").select_option("search")
        page.get_by_role("button", name="Show entries").click()
        expect(page.locator("main h2")).to_have_text("3 entries")
        expect(page.locator("tbody")).to_contain_text("browser test: find a person")
        expect(page.locator("tbody")).to_contain_text("E2E-1")
        expect(page.get_by_role("region", name="Audit entries")).not_to_contain_text("null")
        _shot(page, "audit")
        page.get_by_label("Action").select_option("login")  # one entry per sign-in, none per page
        page.get_by_role("button", name="Show entries").click()
        expect(page.locator("main h2")).to_have_text("4 entries")
        # details name the subjects that still exist (for an admin) and the key that acted
        page.get_by_label("Action").select_option("enroll")
        page.get_by_role("button", name="Show entries").click()
        hugo = page.locator("tbody tr").filter(has_text="Hugo Chavez (#")
        expect(hugo).to_have_count(1)
        expect(hugo).to_contain_text("enroller test key (key:")
        # sign-ins are hidden unless asked for; the log is paged, newest first
        page.get_by_label("Action").select_option("")
        page.get_by_label("Entries per page").fill("3")
        before = page.get_by_test_id("audit-page").inner_text()
        page.get_by_role("button", name="Show entries").click()
        expect(page.get_by_test_id("audit-page")).not_to_have_text(before)
        expect(page.get_by_test_id("audit-page")).to_contain_text("Page 1")
        first = page.get_by_test_id("audit-page").inner_text()
        page.get_by_role("button", name="Older entries →").click()
        expect(page.get_by_test_id("audit-page")).to_contain_text("Page 2")
        assert page.get_by_test_id("audit-page").inner_text() != first
        expect(page.locator("tbody")).not_to_contain_text("login")
        page.get_by_role("button", name="← Newer entries").click()
        expect(page.get_by_test_id("audit-page")).to_have_text(first)
        page.get_by_label("Entries per page").fill("1000")
        page.get_by_role("button", name="Show entries").click()
        expect(page.get_by_test_id("logins-hidden")).to_contain_text("4 sign-ins hidden")
        page.get_by_label("Show sign-ins").check()
        expect(page.get_by_test_id("logins-hidden")).to_have_count(0)
        expect(page.locator("tbody")).to_contain_text("login")
        page.get_by_label("Show sign-ins").uncheck()

        # phone width: the search page still works
        page.set_viewport_size({"width": 390, "height": 844})
        _search(page, lfw("Hugo_Chavez", 2))
        expect(page.get_by_test_id("candidate").first).to_contain_text("Hugo Chavez")
        _shot(page, "search-phone")

        # withdrawing consent (with confirmation) erases the person at once
        page.get_by_role("link", name="Subjects").click()
        page.get_by_role("button", name="Hugo Chavez").click()
        page.get_by_role("button", name="Withdraw consent…").click()
        expect(page.get_by_role("dialog")).to_contain_text("Withdraw Hugo Chavez's consent?")
        _shot(page, "withdraw-confirm")
        page.get_by_role("button", name="Withdraw and erase").click()
        expect(page.locator("#subject-detail")).to_contain_text(
            "Consent withdrawn for Hugo Chavez: 1 sample erased."
        )

        # pages follow the role: an auditor sees the audit page only
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("API key").fill(role_keys["auditor"])
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{url}/audit")
        expect(page.get_by_role("navigation").get_by_role("link")).to_have_count(1)
        page.goto(f"{url}/search")
        expect(page.locator("h1")).to_have_text("Not allowed")
        page.close()
