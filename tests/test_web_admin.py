"""Chromium: the admin page: API keys (create with a role, shown once, last use, revoke) and
collections (retention, model, detector, keep-crops), at desktop and phone width."""

from __future__ import annotations

import httpx

from . import test_api_support as support
from . import test_web
from .test_api_support import auth, live_server
from .test_web import _shot, _sign_in, pytestmark  # noqa: F401
from .test_web_review import _no_sideways_scroll

api_app, role_keys, browser = support.api_app, support.role_keys, test_web.browser  # fixtures


def test_admin_page_manages_keys_and_collections_in_chromium(browser, api_app, role_keys) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    api_app.state.vault.create_collection("staff")
    with live_server(api_app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/signin")
        _sign_in(page, role_keys["admin"])
        page.get_by_role("link", name="Admin").click()
        page.get_by_label("Who will use it").fill("Alice")
        page.get_by_label("Role").select_option("reviewer")
        page.get_by_role("button", name="Create key").click()
        secret = page.get_by_test_id("new-key").inner_text()
        assert secret.startswith("fvk_")
        with httpx.Client(base_url=url, timeout=30) as api:
            assert api.get("/api/v1/me", headers=auth(secret)).json()["role"] == "reviewer"
        keys = page.get_by_test_id("keys")
        expect(keys).to_contain_text("Alice")
        expect(keys.locator("tr").filter(has_text="admin test key")).to_contain_text("your key")

        coll = page.get_by_test_id("admin-collection").filter(has_text="staff")
        expect(coll.locator("dl")).to_contain_text("Modeldlib-resnet-v1")
        coll.get_by_label("Retention (days after the last interaction)").fill("365")
        coll.get_by_label("Keep encrypted face crops (to move to another model later)").check()
        coll.get_by_role("button", name="Save staff").click()
        expect(page.locator("#toast")).to_contain_text("Saved staff.")
        shown = api_app.state.vault.get_collection("staff")
        assert (shown["retention_days"], shown["keep_crops"]) == (365, True)
        coll = page.get_by_test_id("admin-collection").filter(has_text="staff")
        expect(coll).to_contain_text("365 days after the last interaction")
        expect(coll).to_contain_text("the model's own")

        # a new collection with its detector, retention and crops chosen here (as `collection create`)
        new = page.get_by_test_id("admin-new-collection")
        new.get_by_label("Name").fill("doors")
        expect(new.get_by_label("Face detector")).to_contain_text("dlib-hog")
        new.get_by_label("Face detector").select_option("dlib-hog")
        new.get_by_label("Retention (days)").fill("90")
        new.get_by_role("button", name="Create collection").click()
        expect(page.locator("#toast")).to_contain_text("Collection doors created.")
        doors = page.get_by_test_id("admin-collection").filter(has_text="doors")
        expect(doors).to_contain_text("dlib-hog")
        expect(doors).to_contain_text("90 days after the last interaction")
        expect(doors).to_contain_text("not kept")
        made = api_app.state.vault.get_collection("doors")
        assert (made["detector"], made["retention_days"], made["keep_crops"]) == ("dlib-hog", 90, False)
        _shot(page, "admin")

        page.set_viewport_size({"width": 390, "height": 844})
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Revoke the key of Alice").click()
        expect(keys.locator("tr").filter(has_text="Alice")).to_contain_text("revoked")
        with httpx.Client(base_url=url, timeout=30) as api:
            assert api.get("/api/v1/me", headers=auth(secret)).status_code == 401
        _no_sideways_scroll(page)
        page.close()
    assert not errors, errors
