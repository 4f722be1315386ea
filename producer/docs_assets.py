"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets shipped in the package
(``producer/static``: versions, sources and licences in its README.md), never a CDN: the pages
work offline and behind a firewall, and load nothing from a third party."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC: Final = Path(__file__).parent / "static"
ASSETS: Final = "/docs-assets"
OAUTH2_REDIRECT: Final = "/docs/oauth2-redirect"


def install(app: FastAPI) -> None:
    """Serve the assets under ``ASSETS`` and the two pages at ``/docs`` and ``/redoc`` (and
    Swagger UI's OAuth2 redirect page, as FastAPI's own ``/docs`` does)."""
    # One mount per bundle: the rest of ``static/`` (the dashboard's templates and scripts,
    # served with their own rules by ``producer.ui``) is not the docs' to serve.
    for bundle in ("swagger-ui", "redoc"):
        app.mount(f"{ASSETS}/{bundle}", StaticFiles(directory=STATIC / bundle), name=bundle)
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_ui_parameters={"validatorUrl": None},  # no call to validator.swagger.io
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API reference",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
