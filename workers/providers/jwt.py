"""HS256 JSON Web Tokens (RFC 7519 / RFC 7515), signed by PyJWT.

Kling signs every request with one, and so do Zhipu's legacy ``id.secret`` keys. vidqueue only
ever *issues* tokens, never trusts one, so there is no verification here (the simulator checks
Kling's with PyJWT too, ``simulator.kling_auth``). :class:`TokenCache` keeps one token per
secret until shortly before it expires: a busy worker signs a token every few minutes, not one
per request.

PyJWT warns (``InsecureKeyLengthWarning``) when an HMAC key is shorter than 32 bytes. The keys
here are the providers' own (Zhipu's secrets are shorter), not ours to lengthen, so that warning
is silenced for tokens signed here, and only for them.
"""

from __future__ import annotations

import base64
import threading
import time
import warnings
from collections.abc import Callable, Mapping

import jwt
from jwt.warnings import InsecureKeyLengthWarning

# What a minting function returns: the token and the Unix time (seconds) it stops being valid.
Minted = tuple[str, float]

# A PyJWT encoder whose short-key warning is dropped where it is raised (``PyJWS.encode`` warns
# with the caller's frame, ``jwt.api_jwt``): a process-wide filter, scoped to PyJWT's encoding.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning, module=r"jwt\.api_jwt")


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS compact serialisation wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_hs256(header: Mapping[str, object], claims: Mapping[str, object], secret: str) -> str:
    """``header.claims.signature`` by ``jwt.encode``; ``header`` must say ``"alg": "HS256"``.

    The header is exactly ``header`` (PyJWT adds ``"typ": "JWT"`` unless told otherwise; it is
    kept only when ``header`` has it), keys sorted, as PyJWT writes them."""
    if header.get("alg") != "HS256":
        raise ValueError("sign_hs256 signs HS256 tokens only")
    fields = {"typ": None, **header}
    return jwt.encode(dict(claims), secret, algorithm="HS256", headers=fields)


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
