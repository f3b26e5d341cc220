"""The browser UI: static HTML, CSS and JavaScript served by the API process (no build step).

Every page is the same shell; the script renders the page named by the URL and talks to /api/v1 with
the API key the user signed in with (kept in sessionStorage, so it ends with the tab)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from .docs import mount_docs

PAGES = ("signin", "search", "verify", "subjects", "audit", "review", "admin", "people")


def mount_web(app: FastAPI) -> None:
    static_dir = resources.files(__name__) / "static"
    index = static_dir / "index.html"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/search", status_code=307)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(str(static_dir / "favicon.svg"), media_type="image/svg+xml")

    async def page() -> FileResponse:
        return FileResponse(str(index), media_type="text/html")

    @app.get("/ui/limits", include_in_schema=False)
    async def limits(request: Request) -> dict[str, int]:
        """What the upload forms check before sending (no secret: the server's own limits)."""
        api = request.app.state.api_settings
        return {"max_upload_bytes": api.max_upload_bytes, "max_files_per_request": api.max_files_per_request}

    mount_docs(app)
    for name in PAGES:
        app.add_api_route(f"/{name}", page, methods=["GET"], include_in_schema=False, name=f"page_{name}")
