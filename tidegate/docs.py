"""The API documentation pages (`/docs`, `/redoc`) served entirely from this server.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN (and Google's fonts): an air-gapped
install shows blank pages, and every visit tells a third party that someone reads this API. The
assets come from the `fastapi-offline` wheel instead (Swagger UI, ReDoc's standalone bundle and a
favicon, as files), served under `/docs/assets/`; Swagger UI's online validator is switched off.
The pages and `/openapi.json` are open like `/healthz`: they describe the API, every call in it
still needs a token or a session.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, HTTPException, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = "/docs/assets"
POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
          "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'")
"""The pages' Content-Security-Policy: nothing but this server (ReDoc's sidebar shows its maker's logo
from their CDN; the browser does not even ask). Both pages start themselves with an inline script."""
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
         "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}


def assets_directory() -> Path:
    """Where the `fastapi-offline` wheel keeps the files (found without importing it)."""
    spec = find_spec("fastapi_offline")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RuntimeError("the fastapi-offline package (a dependency of tidegate) is not installed")
    return Path(locations[0]) / "static"


def add_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI), `/redoc` and their assets; create `app` with docs_url=None, redoc_url=None."""
    directory, title, openapi = assets_directory(), f"{app.title} API", app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return _sealed(get_swagger_ui_html(
            openapi_url=openapi, title=title, swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css", swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect", swagger_ui_parameters={"validatorUrl": None}))

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return _sealed(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _sealed(get_redoc_html(openapi_url=openapi, title=title, redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                                      redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False))

    @app.get(f"{ASSETS}/{{name}}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        return FileResponse(directory / name, media_type=FILES[name], headers={"Cache-Control": "max-age=86400"})


def _sealed(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page
