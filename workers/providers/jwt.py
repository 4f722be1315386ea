"""HS256 JSON Web Tokens (RFC 7519 / RFC 7515), signed with the standard library only.

Kling signs every request with one, and so do Zhipu's legacy ``id.secret`` keys. vidqueue only
ever *issues* tokens, never trusts one, so there is no verification here. :class:`TokenCache`
keeps one token per secret until shortly before it expires: a busy worker signs a token every
few minutes, not one per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping

# What a minting function returns: the token and the Unix time (seconds) it stops being valid.
Minted = tuple[str, float]


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS compact serialisation wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: Mapping[str, object]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def sign_hs256(header: Mapping[str, object], claims: Mapping[str, object], secret: str) -> str:
    """``header.claims.signature``; ``header`` must say ``"alg": "HS256"``."""
    if header.get("alg") != "HS256":
        raise ValueError("sign_hs256 signs HS256 tokens only")
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    digest = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256)
    return f"{signing_input}.{b64url(digest.digest())}"


class TokenCache:
    """Tokens by secret, minted again once less than ``refresh_s`` of their life is left.

    Adapters are shared by a worker's threads, hence the lock; minting is cheap, so holding the
    lock while minting costs nothing worth avoiding.
    """

    def __init__(self, *, refresh_s: float, clock: Callable[[], float] = time.time) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._tokens: dict[str, Minted] = {}
        self._lock = threading.Lock()

    def get(self, secret: str, mint: Callable[[float], Minted]) -> str:
        """The cached token for ``secret``, or ``mint(now)``'s when it is missing or due."""
        with self._lock:
            now = self._clock()
            cached = self._tokens.get(secret)
            if cached is not None and now < cached[1] - self._refresh_s:
                return cached[0]
            token, expires_at = mint(now)
            self._tokens[secret] = (token, expires_at)
            return token
