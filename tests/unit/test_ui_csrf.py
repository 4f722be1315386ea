"""The dashboard's CSRF token (``producer.ui_session``): derived from the session's token alone
(any replica checks it), different per token, compared in constant time; and where a login may
send the browser next (``producer.ui.safe_next``)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from producer.ui import safe_next
from producer.ui_session import csrf_matches, csrf_token


def test_the_csrf_token_is_an_hmac_keyed_by_the_session_token() -> None:
    mac = hmac.new(b"secret-a", b"vidqueue-csrf-v1", hashlib.sha256).digest()
    assert csrf_token("secret-a") == base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert csrf_token("secret-a") == csrf_token("secret-a")  # no state: every replica agrees
    assert csrf_token("secret-a") != csrf_token("secret-b")
    assert "secret-a" not in csrf_token("secret-a")
    assert len(csrf_token("x")) == 43


def test_only_the_sessions_own_csrf_token_matches() -> None:
    token = csrf_token("secret-a")
    assert csrf_matches("secret-a", token)
    for presented in (None, "", token[:-1], token + "x", csrf_token("secret-b"), token.upper()):
        assert not csrf_matches("secret-a", presented), presented


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/queue", "/ui/queue"),
        ("/ui/jobs?state=failed&label=a%3Db", "/ui/jobs?state=failed&label=a%3Db"),
        ("/ui", "/ui"),
        (None, "/ui/jobs"),
        ("", "/ui/jobs"),
        ("//evil.example/ui", "/ui/jobs"),
        ("/ui//evil.example", "/ui/jobs"),
        ("https://evil.example/ui", "/ui/jobs"),
        ("/ui\\..\\x", "/ui/jobs"),
        ("/v1/jobs", "/ui/jobs"),
        ("/ui/login", "/ui/jobs"),
        ("/uix", "/ui/jobs"),
    ],
)
def test_login_redirects_only_within_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
