"""The dashboard's session: the ``vq_session`` cookie and its CSRF token.

A browser cannot put an ``Authorization`` header on an ``EventSource`` or an ``<img>``, so the
dashboard (``producer.ui``) keeps the API token in a cookie instead: HttpOnly (page scripts
never see it), SameSite=Strict (never sent on a cross-site request), ``Path=/``, and Secure
when the request came over https. The cookie holds the token itself and is checked exactly as
a bearer token is (``producer.web.caller_from``), so there is no server-side session to share
between API replicas, and rotating a token out of the tokens file ends its sessions.

A request authenticated by the cookie with an unsafe method must also carry ``X-CSRF-Token``
equal to the page's CSRF token, ``HMAC-SHA256(key=session token, "vidqueue-csrf-v1")`` in
URL-safe base64: every replica derives it from the cookie alone, a page from another site can
neither read it nor compute it, and it reveals nothing about the token. It is compared in
constant time. This is the "HMAC-based token" pattern of OWASP's CSRF cheat sheet; it is
written here (a few lines on ``hmac``) because the CSRF middlewares on PyPI keep a second
random cookie or a server secret, and the session token already is the per-user secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

COOKIE: Final = "vq_session"
CSRF_HEADER: Final = "x-csrf-token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CSRF_CONTEXT: Final = b"vidqueue-csrf-v1"
# A week: the cookie outlives a browser restart; the token itself is what is checked.
MAX_AGE_S: Final = 7 * 24 * 3600


def csrf_token(session: str) -> str:
    """The CSRF token of a session: an HMAC keyed by the session's token (see the module)."""
    mac = hmac.new(session.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_matches(session: str, presented: str | None) -> bool:
    """Whether ``presented`` is the session's CSRF token (constant-time comparison)."""
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(session).encode(), presented.encode())


def session_of(request: Request) -> str | None:
    """The token the session cookie holds, or None without one. Without tokens configured
    the empty token is a session too: the anonymous producer, as a request without a header."""
    return request.cookies.get(COOKIE)


def csrf_ok(request: Request, session: str) -> bool:
    """Whether a request authenticated by ``session`` may proceed: a safe method, or an unsafe
    one carrying the session's CSRF token in ``X-CSRF-Token``."""
    if request.method.upper() not in UNSAFE_METHODS:
        return True
    return csrf_matches(session, request.headers.get(CSRF_HEADER))


def is_https(request: Request) -> bool:
    """Whether the request came over https, as the server saw it (uvicorn applies
    ``X-Forwarded-Proto`` from the proxies it trusts: ``--forwarded-allow-ips``)."""
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str) -> None:
    """Put ``token`` in the session cookie of ``response``."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=MAX_AGE_S,
        path="/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )


def clear_session(response: Response, request: Request) -> None:
    """Expire the session cookie."""
    response.delete_cookie(
        COOKIE, path="/", secure=is_https(request), httponly=True, samesite="strict"
    )
