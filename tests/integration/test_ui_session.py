"""The dashboard's session on the live API (``producer.ui``, ``producer.ui_session``): logging
in sets an HttpOnly, SameSite=Strict cookie; pages need it; the cookie authenticates ``/v1``
routes when no ``Authorization`` header is sent, unsafe methods only with the page's CSRF
token; bearer requests are unchanged; logging out clears the cookie; assets are served with
their content types. Plain HTTP (httpx): the browser tests render the pages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from producer.ui_session import COOKIE, csrf_token
from tests.support.api import AUTH, GOOD
from tests.support.live import API_TOKEN, LiveStack


@pytest.fixture
def http(live: LiveStack) -> Iterator[httpx.Client]:
    """A client with no cookie jar state, never following redirects."""
    with httpx.Client(base_url=live.api_url, timeout=30, follow_redirects=False) as client:
        yield client


def _session(token: str = API_TOKEN) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={token}"}


def _page_csrf(http: httpx.Client, path: str = "/ui/jobs") -> str:
    page = http.get(path, headers=_session())
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_login_with_a_good_token_sets_the_cookie_and_redirects(http: httpx.Client) -> None:
    answer = http.post("/ui/login", data={"token": API_TOKEN, "next": "/ui/queue"})
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"] == "/ui/queue"
    cookie = answer.headers["set-cookie"]
    print(f"set-cookie: {cookie.replace(API_TOKEN, '<token>')}")
    assert cookie.startswith(f"{COOKIE}={API_TOKEN};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http here
    # Without `next`, the jobs page; a `next` off the dashboard is never followed.
    for target in ("", "//evil.example/ui", "https://evil.example/", "/\\evil.example"):
        again = http.post("/ui/login", data={"token": API_TOKEN, "next": target})
        assert again.status_code == 303
        assert again.headers["location"] == "/ui/jobs", target


def test_the_cookie_is_secure_behind_an_https_proxy(http: httpx.Client) -> None:
    """uvicorn applies X-Forwarded-Proto from the proxies it trusts (loopback by default), so a
    login that came over https gets a Secure cookie."""
    answer = http.post(
        "/ui/login", data={"token": API_TOKEN}, headers={"x-forwarded-proto": "https"}
    )
    assert answer.status_code == 303
    attributes = {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}
    assert {"secure", "httponly", "samesite=strict"} <= attributes


def test_a_bad_token_is_a_401_with_the_form_and_the_error(http: httpx.Client) -> None:
    answer = http.post("/ui/login", data={"token": "not-a-token"})
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert 'id="login-form"' in answer.text
    error = re.search(r'<p id="login-error"[^>]*>([^<]*)</p>', answer.text)
    assert error and "not valid" in error.group(1), answer.text
    assert "not-a-token" not in answer.text  # the refused secret is not echoed back
    empty = http.post("/ui/login", data={"token": ""})
    assert empty.status_code == 401 and "enter your API token" in empty.text


def test_the_login_page_is_the_form(http: httpx.Client) -> None:
    page = http.get("/ui/login", params={"next": "/ui/queue"})
    assert page.status_code == 200
    for needle in ('id="login-form"', 'id="token"', 'type="password"', 'id="login-submit"'):
        assert needle in page.text
    assert 'value="/ui/queue"' in page.text
    assert "content-security-policy" in page.headers


def test_pages_redirect_to_the_login_without_a_session(http: httpx.Client) -> None:
    assert http.get("/ui").headers["location"] == "/ui/jobs"
    for path in ("/ui/jobs", "/ui/queue", f"/ui/jobs/{uuid.uuid4().hex}", "/ui/jobs?state=failed"):
        for headers in ({}, _session("not-a-token")):
            answer = http.get(path, headers=headers)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith("/ui/login?next=/ui/"), answer.headers
    assert http.get("/ui/jobs?state=failed").headers["location"] == (
        "/ui/login?next=/ui/jobs%3Fstate%3Dfailed"
    )


def test_pages_with_a_session_carry_the_contract_ids(http: httpx.Client) -> None:
    csrf = _page_csrf(http)
    assert csrf == csrf_token(API_TOKEN)
    pages = {
        "/ui/jobs": ("job-grid", "filter-state", "filter-provider", "filter-label", "next-page"),
        f"/ui/jobs/{uuid.uuid4().hex}": ("timeline-bar", "event-list", "job-spec", "cancel"),
        "/ui/queue": ("queue-table", "tenant-table", 'data-metric="detection_lag_s"'),
    }
    for path, needles in pages.items():
        page = http.get(path, headers=_session())
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        for needle in ("nav-jobs", "nav-queue", 'id="logout"', *needles):
            assert needle in page.text, (path, needle)
        assert API_TOKEN not in page.text  # only its CSRF token, never the token
    assert http.get("/ui/jobs/<script>", headers=_session()).status_code == 404
    paths = http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_the_cookie_reads_v1_routes(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json=GOOD, headers=AUTH).json()
    listing = http.get("/v1/jobs", params={"limit": 200}, headers=_session())
    assert listing.status_code == 200
    assert job["id"] in [j["id"] for j in listing.json()["jobs"]]
    assert http.get(f"/v1/jobs/{job['id']}", headers=_session()).json()["id"] == job["id"]
    assert http.get(f"/v1/jobs/{job['id']}/events", headers=_session()).status_code == 200
    refused = http.get("/v1/jobs", headers=_session("not-a-token"))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert http.get("/v1/jobs").status_code == 401  # neither header nor cookie


def test_unsafe_requests_by_cookie_need_the_csrf_token(http: httpx.Client) -> None:
    label = uuid.uuid4().hex
    spec = {**GOOD, "labels": {"ui-test": label}}
    csrf = _page_csrf(http)
    for extra in ({}, {"x-csrf-token": "wrong"}, {"x-csrf-token": csrf_token("other-token")}):
        answer = http.post("/v1/jobs", json=spec, headers={**_session(), **extra})
        assert answer.status_code == 403, (extra, answer.text)
        assert answer.json()["error"]["code"] == "csrf_failed"
        batch = http.post("/v1/jobs/batch", json={"jobs": [spec]}, headers={**_session(), **extra})
        assert batch.status_code == 403
    created = http.post("/v1/jobs", json=spec, headers={**_session(), "x-csrf-token": csrf})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    found = http.get("/v1/jobs", params={"label": f"ui-test:{label}"}, headers=AUTH).json()
    assert [j["id"] for j in found["jobs"]] == [job_id]  # the refused ones made nothing
    # Cancel (DELETE) is unsafe too: refused without the token, answered with it.
    refused = http.delete(f"/v1/jobs/{job_id}", headers=_session())
    assert refused.status_code == 403
    cancel = http.delete(f"/v1/jobs/{job_id}", headers={**_session(), "x-csrf-token": csrf})
    assert cancel.status_code in (200, 409), cancel.text  # 409 once it is mirroring/finished


def test_bearer_requests_are_unaffected(http: httpx.Client) -> None:
    plain = http.post("/v1/jobs", json=GOOD, headers=AUTH)
    assert plain.status_code == 202
    # The header wins over a cookie: no CSRF token is asked, a bad cookie is ignored.
    both = http.post("/v1/jobs", json=GOOD, headers={**AUTH, **_session("not-a-token")})
    assert both.status_code == 202, both.text
    wrong = http.get("/v1/jobs", headers={"authorization": "Bearer nope", **_session()})
    assert wrong.status_code == 401


def test_logout_clears_the_cookie(http: httpx.Client) -> None:
    answer = http.post("/ui/logout", headers=_session())
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login"
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith(f'{COOKIE}="";') or cookie.startswith(f"{COOKIE}=;")
    assert "max-age=0" in cookie
    # A real browser round trip: log in, read a page, log out, the page redirects again.
    with httpx.Client(base_url=http.base_url, follow_redirects=False) as browser:
        assert browser.post("/ui/login", data={"token": API_TOKEN}).status_code == 303
        assert browser.get("/ui/jobs").status_code == 200
        assert browser.post("/ui/logout").status_code == 303
        assert browser.get("/ui/jobs").status_code == 303


def test_cross_site_form_posts_are_refused(http: httpx.Client) -> None:
    answer = http.post(
        "/ui/login", data={"token": API_TOKEN}, headers={"sec-fetch-site": "cross-site"}
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_assets_are_served_with_their_content_types(http: httpx.Client) -> None:
    expected = {
        "/ui/assets/ui.css": "text/css",
        "/ui/assets/common.js": "text/javascript",
        "/ui/assets/jobs.js": "text/javascript",
        "/ui/assets/job.js": "text/javascript",
        "/ui/assets/queue.js": "text/javascript",
        "/ui/assets/favicon.svg": "image/svg+xml",
        "/ui/assets/vendor/uPlot.iife.min.js": "text/javascript",
        "/ui/assets/vendor/uPlot.min.css": "text/css",
        "/ui/assets/vendor/LICENSE": "text/plain",
    }
    for path, kind in expected.items():
        answer = http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].split(";")[0] == kind, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert len(answer.content) > 100, path
    for path in ("/ui/assets/layout.html", "/ui/assets/../ui.py", "/ui/assets/nope.js"):
        assert http.get(path).status_code == 404, path


def test_the_docs_assets_serve_only_the_docs_bundles(http: httpx.Client) -> None:
    assert http.get("/docs-assets/swagger-ui/swagger-ui.css").status_code == 200
    # The dashboard's files are served by /ui/assets alone, with its rules (no templates)
    stray = ("/docs-assets/ui/layout.html", "/docs-assets/ui/jobs.js", "/docs-assets/README.md")
    for path in stray:
        assert http.get(path).status_code == 404, path
