"""Chromium: names on the faces of a group photo, and a two-reviewer review that compares faces.

Five consented people are enrolled over HTTP; a photo of three real people side by side (two enrolled,
one stranger, from shared LFW images the gallery does not hold) is searched in the web UI under a case;
two reviewer keys open the queue, see the searched face next to the enrolled photos with per-photo
similarity, enlarge them, and confirm with notes. Screenshots as in tests/test_web.py."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
from PIL import Image

from . import test_api_support as support
from . import test_web
from .conftest import lfw
from .test_api_support import auth, live_server, setup_gallery
from .test_web import _shot, _sign_in, pytestmark  # noqa: F401

api_app, role_keys, browser = support.api_app, support.role_keys, test_web.browser  # fixtures

FIVE = {
    "Tony_Blair": [1, 2],
    "Colin_Powell": [1, 2],
    "Jacques_Chirac": [1],
    "Hugo_Chavez": [1],
    "Laura_Bush": [1],
}


def group_photo(path: Path) -> Path:
    """Colin Powell, a stranger (Andre Agassi) and Tony Blair, left to right, from photos not enrolled."""
    tiles = [
        Image.open(lfw(n, k)).convert("RGB")
        for n, k in (("Colin_Powell", 5), ("Andre_Agassi", 1), ("Tony_Blair", 5))
    ]
    path.write_bytes(_jpeg(np.hstack([np.asarray(t) for t in tiles])))
    return path


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _no_sideways_scroll(page) -> None:  # type: ignore[no-untyped-def]
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > "
        "window.innerWidth + 1).slice(0, 5).map((e) => e.tagName + '.' + e.className)"
    )
    assert width <= page.viewport_size["width"], f"page is {width} px wide: {wide}"


def _loaded(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until every face image of the page has arrived (for the screenshots)."""
    from playwright.sync_api import expect

    expect(page.locator(".nothumb", has_text="loading")).to_have_count(0, timeout=30_000)


# Three people; a detector may also find the partial face at the edge of the middle photo (no match).
SUMMARY = re.compile(r"^[34] faces: Colin Powell 0\.9\d\d; (no match; )+Tony Blair 0\.9\d\d$")


def test_names_on_faces_and_review_with_faces_in_chromium(
    browser, api_app, role_keys, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    group = group_photo(tmp_path / "group.jpg")
    errors: list[str] = []
    with live_server(api_app) as url:
        with httpx.Client(base_url=url, timeout=120) as api:
            setup_gallery(api, role_keys, FIVE)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(f"{url}/signin")
        _sign_in(page, role_keys["admin"])

        # search the group photo: every face is labelled, left to right, with a one-line summary
        page.get_by_role("link", name="Search").click()
        page.locator("#collection").select_option("g")
        page.get_by_label("Photo to search with").set_input_files(str(group))
        page.get_by_label("Purpose").fill("browser test: who is in the photo")
        page.get_by_label("Case id (optional)").fill("CASE-7")
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.get_by_test_id("summary")).to_have_text(SUMMARY)
        labels = page.get_by_test_id("face-label")
        expect(labels.nth(0)).to_contain_text("1. Colin Powell")
        expect(labels.nth(1)).to_have_text("2. no match")
        expect(page.locator(".facebox.match")).to_have_count(2)
        expect(page.locator(".facebox.no_match")).not_to_have_count(0)
        count = labels.count()
        labels.filter(has_text="Tony Blair").click()
        expect(page.locator("#candidates h2")).to_have_text(f"Face {count} (from the left)")
        expect(page.get_by_test_id("candidate").first).to_contain_text("1. Tony Blair")
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download the photo with names").click()
        drawn = Image.open(dl.value.path())
        assert drawn.size == Image.open(group).size
        _shot(page, "search-group")

        # the API gives the same summary and the annotated photo; a repeated search of the same photo in
        # the same case adds no second candidate for the same face and subject
        with httpx.Client(base_url=url, headers=auth(role_keys["searcher"]), timeout=120) as api:
            form = {"purpose": "api test", "case_id": "CASE-7"}
            files = [("image", ("group.jpg", group.read_bytes(), "image/jpeg"))]
            res = api.post("/api/v1/collections/g/search", data=form, files=files)
            assert res.status_code == 200 and SUMMARY.match(res.json()["summary"]), res.text
            img = api.post("/api/v1/collections/g/search/annotated", data=form, files=files)
            assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
            assert unquote(img.headers["x-search-summary"]) == res.json()["summary"]
            drawn = np.asarray(Image.open(io.BytesIO(img.content)).convert("RGB")).astype(int)
            green = (abs(drawn - [31, 157, 85]).sum(axis=2) < 60).sum()
            amber = (abs(drawn - [255, 176, 0]).sum(axis=2) < 60).sum()
            assert green > 500 and amber > 200, (green, amber)
        with httpx.Client(base_url=url, headers=auth(role_keys["reviewer"]), timeout=60) as api:
            case = api.get("/api/v1/review/CASE-7").json()
            assert sorted(c["name"] for c in case["candidates"]) == ["Colin Powell", "Tony Blair"]
            assert case["exists"] is True
            nope = api.get("/api/v1/review/NO-SUCH").json()
            assert nope["exists"] is False and nope["candidates"] == []

        # first reviewer: the queue, the searched face next to the enrolled photos, enlarge, confirm
        second = api_app.state.vault.create_api_key("reviewer", "second reviewer")[0]
        _sign_in(page, role_keys["reviewer"])
        page.get_by_role("link", name="Review").click()
        queue = page.get_by_test_id("review-queue")
        expect(queue).to_contain_text("CASE-7")
        page.get_by_role("button", name="Open case CASE-7").click()
        tony = page.get_by_test_id("review-candidate").filter(has_text="Tony Blair")
        expect(tony.get_by_test_id("review-probe").locator("img")).to_have_count(2)  # face and whole photo
        expect(tony.get_by_test_id("review-probe")).to_contain_text(f"Face {count} of {count} in the photo")
        expect(tony.get_by_test_id("review-samples").locator("img")).to_have_count(2)
        expect(tony.get_by_test_id("sample-similarity").first).to_have_text(
            re.compile(r"similarity 0\.9\d\d")
        )
        size = tony.get_by_test_id("review-probe").locator("img.face").bounding_box()
        assert size is not None and size["width"] >= 150  # large enough to judge
        tony.get_by_role("button", name=re.compile("^Enlarge: The searched face")).click()
        expect(page.locator("#zoom")).to_be_visible()
        expect(page.locator("#zoom-img")).to_have_attribute("src", re.compile("^blob:"))
        _loaded(page)
        _shot(page, "review-zoom")
        page.locator("#zoom").get_by_role("button", name="Close").click()
        tony.get_by_label("Note (optional)").fill("same ears and hairline")
        tony.get_by_role("button", name="Confirm Tony Blair").click()
        expect(tony.get_by_test_id("review-state")).to_contain_text("Pending: 1 of 2 confirmations")
        expect(tony.get_by_test_id("review-notes")).to_contain_text("same ears and hairline")
        _loaded(page)
        _shot(page, "review")

        # an unknown case id is "no such case", not an empty case
        page.get_by_label("Case id", exact=True).fill("CASE-404")
        page.get_by_role("button", name="Show candidates").click()
        expect(page.get_by_test_id("no-such-case")).to_contain_text("No such case")

        # second reviewer, at phone width: the same comparison, no sideways scrolling; confirms
        page.set_viewport_size({"width": 390, "height": 844})
        _sign_in(page, second)
        page.get_by_role("link", name="Review").click()
        page.get_by_role("button", name="Open case CASE-7").click()
        tony = page.get_by_test_id("review-candidate").filter(has_text="Tony Blair")
        expect(tony.get_by_test_id("review-probe").locator("img")).to_have_count(2)
        expect(tony.get_by_test_id("review-notes")).to_contain_text("same ears and hairline")
        _no_sideways_scroll(page)
        _loaded(page)
        _shot(page, "review-phone")
        tony.get_by_role("button", name="Confirm Tony Blair").click()
        expect(tony.get_by_test_id("review-state")).to_contain_text("Confirmed by reviewer test key")
        page.get_by_role("button", name="Reject Colin Powell").click()
        colin = page.get_by_test_id("review-candidate").filter(has_text="Colin Powell")
        expect(colin.get_by_test_id("review-state")).to_contain_text("Rejected by second reviewer")
        # every candidate of the search is decided: its kept probe is gone
        expect(tony.get_by_test_id("review-probe")).to_contain_text("deleted once every candidate")
        assert not any((Path(api_app.state.vault.photos_dir) / ".review").glob("*.sealed"))

        page.set_viewport_size({"width": 390, "height": 844})
        _sign_in(page, role_keys["admin"])
        page.get_by_role("link", name="Search").click()
        page.locator("#collection").select_option("g")
        page.get_by_label("Photo to search with").set_input_files(str(group))
        page.get_by_label("Purpose").fill("browser test: phone")
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.get_by_test_id("summary")).to_have_text(SUMMARY)
        _no_sideways_scroll(page)
        _shot(page, "search-group-phone")
        page.close()

    # what reviewers were shown is in the audit log; so are their notes
    vault = api_app.state.vault
    views = vault.audit_entries(limit=1000, action="review.view")
    assert {e.details["shown"] for e in views} == {"face", "photo"}
    assert all(e.case_id == "CASE-7" for e in views)
    notes = [e.details.get("note") for e in vault.audit_entries(limit=100, action="review")]
    assert "same ears and hairline" in notes
    assert vault.audit_entries(limit=1000, action="sample.view")
    assert not errors, errors
