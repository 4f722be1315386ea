"""The jobs dashboard at ``/ui``: a login page and three pages (jobs, one job, the queue).

The pages are plain HTML shells from ``producer/static/ui`` (no build step, nothing from a
CDN); their scripts read everything from the ``/v1`` API with the session cookie
(``producer.ui_session``), so a page shows exactly what its token may see, as the API does.
This module only serves the shells and assets and manages the session: ``/ui/login`` checks a
token as a bearer token is checked (``web.known_caller``) and sets the cookie; a page without a
valid session redirects to the login page. None of these routes is in the OpenAPI document.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from producer import ui_session, web

router = APIRouter(include_in_schema=False)

STATIC_UI: Final = Path(__file__).parent / "static" / "ui"
ASSETS: Final = "/ui/assets"
LOGIN: Final = "/ui/login"
HOME: Final = "/ui/jobs"
MAX_FORM: Final = 16 * 1024
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_LICENSES: Final = frozenset({"LICENSE"})
_JOB_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NEXT: Final = re.compile(r"^/ui(/[A-Za-z0-9_\-/]*)?(\?[^\\\s#]*)?$")
# Covers and videos are 302s to presigned S3 URLs, on the S3 endpoint's origin.
_CSP: Final = (
    "default-src 'self'; img-src 'self' data: http: https:; media-src 'self' http: https:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS: Final = {
    "content-security-policy": _CSP,
    "cache-control": "no-store",  # a page holds its session's CSRF token
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
_UPLOT_HEAD: Final = (
    f'<link rel="stylesheet" href="{ASSETS}/vendor/uPlot.min.css">\n'
    f'  <script src="{ASSETS}/vendor/uPlot.iife.min.js"></script>'
)


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (STATIC_UI / name).read_text(encoding="utf-8")


def _fill(template: str, raw: dict[str, str], text: dict[str, str]) -> str:
    """``template`` with ``{{name}}`` replaced: ``raw`` values as they are (the package's own
    markup), ``text`` values HTML-escaped (anything that came with a request)."""
    for name, value in raw.items():
        template = template.replace("{{" + name + "}}", value)
    for name, value in text.items():
        template = template.replace("{{" + name + "}}", html.escape(value, quote=True))
    return template


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path on this site, else the jobs page (never
    another site: ``//evil.example`` or ``/\\evil`` are refused)."""
    if target and _NEXT.match(target) and "//" not in target and target != LOGIN:
        return target
    return HOME


def _cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF): browsers say so in ``Sec-Fetch-Site``."""
    return request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")


def _login_page(next_url: str, error: str = "", status: int = 200) -> HTMLResponse:
    body = _fill(
        _template("login.html"),
        {"error_hidden": "" if error else "hidden"},
        {"next": next_url, "error": error},
    )
    return _html(body, status)


@router.get("/ui")
def ui_home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get(LOGIN)
def login_form(next: str | None = None) -> HTMLResponse:
    return _login_page(safe_next(next))


@router.post(LOGIN)
async def login(request: Request) -> Response:
    """Check the form's ``token`` as a bearer token is checked; a good one sets the session
    cookie and redirects (303) to ``next``, a bad one is a 401 with the form again."""
    form = parse_qs((await web.read_body(request, MAX_FORM, "token")).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or [""])[0])
    if _cross_site(request):
        return _login_page(target, "this form was posted from another site", 403)
    found = web.known_caller(token)
    if found is None:
        problem = "enter your API token" if not token else "this token is not valid for this API"
        return _login_page(target, problem, 401)
    answer = RedirectResponse(target, status_code=303)
    ui_session.set_session(answer, request, token)
    return answer


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    """Clear the session cookie and go back to the login page."""
    answer = RedirectResponse(LOGIN, status_code=303)
    if _cross_site(request):
        return Response("cross-site logout refused", status_code=403)
    ui_session.clear_session(answer, request)
    return answer


def _page(request: Request, name: str, title: str, *, head: str = "", job_id: str = "") -> Response:
    """A dashboard page for a valid session, else a 303 to the login page with ``next``."""
    session = ui_session.session_of(request)
    who = web.known_caller(session) if session is not None else None
    if session is None or who is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{LOGIN}?next={quote(here, safe='/')}", status_code=303)
    main = _template(f"{name}.html")
    body = _fill(
        _template("layout.html"),
        {"main": main, "head": head, "page": name},
        {
            "title": title,
            "csrf": ui_session.csrf_token(session),
            "producer": who.producer,
            "job_id": job_id,
        },
    )
    return _html(body)


@router.get(HOME)
def jobs_page(request: Request) -> Response:
    return _page(request, "jobs", "Jobs")


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    if not _JOB_ID.match(job_id):
        return _html("<!doctype html><title>Not found</title><p>No such job.</p>", 404)
    return _page(request, "job", f"Job {job_id}", job_id=job_id)


@router.get("/ui/queue")
def queue_page(request: Request) -> Response:
    return _page(request, "queue", "Queue", head=_UPLOT_HEAD)


@router.get(ASSETS + "/{name:path}")
def asset(name: str) -> Response:
    """A file of ``producer/static/ui`` with its content type: scripts, styles, images and the
    vendored libraries' licences (the HTML templates are not served as they are)."""
    root = STATIC_UI.resolve()
    path = (root / name).resolve()
    kind = _TYPES.get(path.suffix) or (
        "text/plain; charset=utf-8" if path.name in _LICENSES else ""
    )
    if not kind or not path.is_relative_to(root) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
    return FileResponse(path, media_type=kind, headers=headers)
