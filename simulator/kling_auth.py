"""Kling's token check and error envelope (docs/wire-formats.md §5), shared by its routes.

Every Kling request needs ``Authorization: Bearer <JWT>``: HS256, signed with the secret key
registered for the token's ``iss`` (the access key), inside its ``nbf``/``exp`` window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


def error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": uuid.uuid4().hex}
    return JSONResponse(body, status_code=status)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def authenticate(request: Request, secrets: dict[str, str], now: float) -> str | JSONResponse:
    """The access key of a valid token, or the 401 (codes 1001-1004) to answer."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error(401, 1001, "Authorization header is empty")
    try:
        head, claims_part, signature = token.split(".")
        header = json.loads(_b64decode(head))
        claims: Any = json.loads(_b64decode(claims_part))
        given = _b64decode(signature)
    except (ValueError, binascii.Error):
        return error(401, 1002, "Authorization is invalid: not a JWT")
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    secret = secrets.get(issuer) if isinstance(issuer, str) else None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or secret is None:
        return error(401, 1002, "Authorization is invalid")
    signing_input = f"{head}.{claims_part}".encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        return error(401, 1002, "Authorization is invalid: bad signature")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(nbf, int | float) and now < nbf:
        return error(401, 1003, "Authorization is not yet valid")
    if not isinstance(exp, int | float) or now >= exp:
        return error(401, 1004, "Authorization has expired")
    return str(issuer)
