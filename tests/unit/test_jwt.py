"""The HS256 JWT helper: tokens other implementations accept, and a cache that renews in time.

Signatures are checked here with ``hmac`` directly, not with the helper under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from typing import Any

import pytest

from workers.providers.jwt import TokenCache, b64url, sign_hs256

# The example token of jwt.io (RFC 7519 style, compact JSON), signed with "your-256-bit-secret".
JWT_IO_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def decode(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_the_jwt_io_example_token_is_reproduced_exactly() -> None:
    token = sign_hs256(
        {"alg": "HS256", "typ": "JWT"},
        {"sub": "1234567890", "name": "John Doe", "iat": 1516239022},
        "your-256-bit-secret",
    )
    assert token == JWT_IO_TOKEN


def test_a_token_is_three_unpadded_base64url_segments_signed_with_hmac_sha256() -> None:
    header, claims = {"alg": "HS256", "typ": "JWT"}, {"iss": "ak", "exp": 1800, "nbf": -5}
    token = sign_hs256(header, claims, "s3cr3t/+")
    head, body, signature = token.split(".")
    assert "=" not in token
    assert decode(head) == header
    assert decode(body) == claims
    expected = hmac.new(b"s3cr3t/+", f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()


def test_b64url_uses_the_url_safe_alphabet_without_padding() -> None:
    assert b64url(b"\xfb\xff") == "-_8"


def test_only_hs256_is_signed() -> None:
    with pytest.raises(ValueError, match="HS256"):
        sign_hs256({"alg": "none"}, {}, "secret")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_reuses_a_token_until_the_refresh_window_then_mints_anew() -> None:
    # Given a cache renewing 30 s before expiry and tokens living 100 s
    clock, minted = Clock(), []

    def mint(now: float) -> tuple[str, float]:
        minted.append(now)
        return f"token-{len(minted)}", now + 100

    cache = TokenCache(refresh_s=30, clock=clock)
    # When it is asked repeatedly within the token's first 70 s
    assert cache.get("secret", mint) == "token-1"
    clock.now += 69.9
    assert cache.get("secret", mint) == "token-1"
    # Then one token serves; at 70 s a new one is minted, stamped with the current time
    clock.now += 0.1
    assert cache.get("secret", mint) == "token-2"
    assert minted == [1_000.0, 1_070.0]


def test_the_cache_keeps_one_token_per_secret() -> None:
    cache = TokenCache(refresh_s=0, clock=Clock())
    assert cache.get("a", lambda now: ("token-a", now + 10)) == "token-a"
    assert cache.get("b", lambda now: ("token-b", now + 10)) == "token-b"
    assert cache.get("a", lambda now: ("other", now + 10)) == "token-a"


def test_threads_sharing_the_cache_get_one_token() -> None:
    cache, minted, tokens = TokenCache(refresh_s=0), [], []

    def mint(now: float) -> tuple[str, float]:
        minted.append(now)
        return "shared", now + 600

    def use() -> None:
        tokens.append(cache.get("secret", mint))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(minted) == 1
    assert tokens == ["shared"] * 16
