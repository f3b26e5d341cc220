"""Chromium: /docs renders with the network cut off (Swagger UI from the server's own assets), no
request leaves 127.0.0.1, /redoc leads to it, and the favicon is served."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

from . import test_api_support as support
from . import test_web
from .test_api_support import live_server
from .test_web import _shot, pytestmark  # noqa: F401

api_app, browser = support.api_app, test_web.browser  # fixtures


def test_docs_render_offline_in_chromium(browser, api_app) -> None:
    from playwright.sync_api import expect

    outside: list[str] = []
    errors: list[str] = []
    with live_server(api_app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def route(r) -> None:  # type: ignore[no-untyped-def]
            if r.request.url.startswith(url):
                r.continue_()
            else:  # the network is cut off: anything else would be a third party
                outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/redoc")
        expect(page).to_have_url(f"{url}/docs")
        if find_spec("swagger_ui") is None:
            expect(page.locator("body")).to_contain_text("swagger-ui-py")
            pytest.skip("swagger-ui-py is not installed: /docs shows how to get it (no CDN either way)")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("facevault")
        expect(page.locator(".opblock-tag").filter(has_text="review")).to_be_visible()
        _shot(page, "api-docs")
        assert page.request.get(f"{url}/favicon.ico").headers["content-type"].startswith("image/svg+xml")
        page.close()
    assert outside == [] and errors == [], (outside, errors)
