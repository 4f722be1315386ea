"""Kling's token check and error envelope (docs/wire-formats.md §5), shared by its routes.

Every Kling request needs ``Authorization: Bearer <JWT>``: HS256, signed with the secret key
registered for the token's ``iss`` (the access key), inside its ``nbf``/``exp`` window.

The token is parsed and its signature verified by PyJWT (``jwt.decode``, HS256 only). The
``nbf``/``exp`` window is checked here, by hand, against the ``now`` the caller passes: the
simulator runs on its own (possibly scaled) clock, and PyJWT only ever compares with the real
one. Kling's answer codes (1002 invalid, 1003 not yet valid, 1004 expired) are mapped here too.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import jwt
from fastapi import Request
from fastapi.responses import JSONResponse
from jwt.warnings import InsecureKeyLengthWarning

# The simulator's keys are short test strings: PyJWT's short-key warning is noise here.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning, module=r"jwt\.")

# The window is ours to check (``now`` is the simulator's clock), and ``iss`` picks the key.
_SIGNATURE_ONLY: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}


def error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": uuid.uuid4().hex}
    return JSONResponse(body, status_code=status)


def authenticate(request: Request, secrets: dict[str, str], now: float) -> str | JSONResponse:
    """The access key of a valid token, or the 401 (codes 1001-1004) to answer."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error(401, 1001, "Authorization header is empty")
    try:
        header = jwt.get_unverified_header(token)
        unverified: Any = jwt.decode(token, options={"verify_signature": False})
    except jwt.DecodeError:
        return error(401, 1002, "Authorization is invalid: not a JWT")
    issuer = unverified.get("iss") if isinstance(unverified, dict) else None
    secret = secrets.get(issuer) if isinstance(issuer, str) else None
    if header.get("alg") != "HS256" or secret is None:
        return error(401, 1002, "Authorization is invalid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options=_SIGNATURE_ONLY
        )
    except jwt.InvalidSignatureError:
        return error(401, 1002, "Authorization is invalid: bad signature")
    except jwt.InvalidTokenError:
        return error(401, 1002, "Authorization is invalid")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(nbf, int | float) and now < nbf:
        return error(401, 1003, "Authorization is not yet valid")
    if not isinstance(exp, int | float) or now >= exp:
        return error(401, 1004, "Authorization has expired")
    return str(issuer)
