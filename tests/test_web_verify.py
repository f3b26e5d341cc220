"""Chromium: the 1:1 verify page (two photos, the two faces side by side, the score and what it means),
false-match rates in words, the search options, and the audit page at phone width (entries as cards,
details as words, sign-ins hidden until asked for, an export that keeps the filters on screen)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from . import test_api_support as support
from . import test_web
from .conftest import lfw
from .test_api_support import live_server, setup_gallery
from .test_web import _shot, _sign_in, pytestmark  # noqa: F401
from .test_web_review import _no_sideways_scroll

api_app, role_keys, browser = support.api_app, support.role_keys, test_web.browser  # fixtures


def _verify(page, a, b):  # type: ignore[no-untyped-def]
    page.get_by_label("First photo").set_input_files(str(a))
    page.get_by_label("Second photo").set_input_files(str(b))
    page.get_by_role("button", name="Compare the faces").click()


def test_verify_page_words_and_audit_at_phone_width_in_chromium(browser, api_app, role_keys) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    with live_server(api_app) as url:
        with httpx.Client(base_url=url, timeout=120) as api:
            setup_gallery(api, role_keys, {"Tony_Blair": [1], "Hugo_Chavez": [1]})
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/signin")
        _sign_in(page, role_keys["searcher"])

        # the verify page: same person, then two different people
        page.get_by_role("link", name="Verify").click()
        page.get_by_label("Purpose").fill("identity check at the desk")
        _verify(page, lfw("Tony_Blair", 3), lfw("Tony_Blair", 4))
        verdict = page.get_by_test_id("verify-verdict")
        expect(verdict).to_contain_text("Same person", timeout=60_000)
        expect(verdict).to_contain_text(
            re.compile(r"two different people score that high about 1 in [\d,]+ comparisons")
        )
        expect(page.get_by_test_id("verify-faces").locator("img")).to_have_count(2)
        _shot(page, "verify")
        _verify(page, lfw("Tony_Blair", 3), lfw("Hugo_Chavez", 2))
        expect(verdict).to_contain_text("Not the same person", timeout=60_000)

        # the purpose is remembered; search options and rates in words
        page.get_by_role("link", name="Search").click()
        expect(page.get_by_label("Purpose")).to_have_value("identity check at the desk")
        page.get_by_text("Options: candidates per face").click()
        page.get_by_label("Candidates per face").fill("2")
        page.get_by_label("False-match rate per comparison").select_option("1e-3")
        page.get_by_label("Photo to search with").set_input_files(str(lfw("Tony_Blair", 5)))
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator("#results .meta").first).to_contain_text("about 1 in 1,000 comparisons")
        expect(page.get_by_test_id("candidate").first).to_contain_text(
            "different people score this high about 1 in"
        )

        # the audit page at phone width
        page.set_viewport_size({"width": 390, "height": 844})
        _sign_in(page, role_keys["auditor"])
        expect(page.locator("main h2").first).to_have_text(re.compile(r"^\d+ entr(y|ies)$"))
        assert "login" not in page.locator("tbody").inner_text().split()  # sign-ins hidden by default
        expect(page.locator("tbody tr").first.locator("dl.kv")).to_be_visible()
        _no_sideways_scroll(page)
        _shot(page, "audit-phone")
        page.get_by_label("Show sign-ins").check()
        expect(page.locator("tbody")).to_contain_text("login")
        page.get_by_label("Action").select_option("verify")
        page.get_by_role("button", name="Show entries").click()
        expect(page.locator("main h2").first).to_have_text("2 entries")
        with page.expect_download() as dl:
            page.get_by_role("button", name="Export JSON Lines").click()
        text = Path(dl.value.path()).read_text(encoding="utf-8")
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        assert [e["action"] for e in lines] == ["verify", "verify"]  # the on-screen filter, in the file
        _no_sideways_scroll(page)
        page.close()
    assert not errors, errors
