"""``/docs`` from assets this server holds: Swagger UI 5 from the ``swagger-ui-py`` package's static
folder (read as files: the package itself is never imported), no CDN, no third party (a self-hosted
privacy product calls nobody). ``/redoc`` sends the reader to ``/docs``
(no package ships ReDoc's bundle). Without the package, ``/docs`` says how to get it and links the
OpenAPI document itself."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def _bundle_dir() -> str | None:
    """The static folder of ``swagger-ui-py`` (Swagger UI 5, which reads OpenAPI 3.1), if installed."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("swagger_ui")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        static = Path(root) / "static"
        if (static / "swagger-ui-bundle.js").is_file():
            return str(static)
    return None


def mount_docs(app: FastAPI) -> None:
    """Replace FastAPI's CDN-loading ``/docs`` with one served from local assets."""
    docs = app.docs_url or "/docs"
    drop = {docs, f"{docs}/oauth2-redirect", "/redoc"}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in drop]
    openapi_url = app.openapi_url or "/openapi.json"
    assets = _bundle_dir()
    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get(docs, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                "<!doctype html><title>facevault API</title><h1>facevault API</h1><p>The interactive "
                "documentation needs the Python package <code>swagger-ui-py</code> on the server "
                f'(no CDN is used). The API description is at <a href="{openapi_url}">{openapi_url}</a>; '
                "docs/API.md explains every route.</p>"
            )
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> RedirectResponse:
        return RedirectResponse(docs, status_code=307)
