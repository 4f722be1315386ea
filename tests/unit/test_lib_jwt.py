"""HS256 tokens by PyJWT: the worker's (``workers.providers.jwt.sign_hs256``) decode with PyJWT's
own verifier and carry exactly the header asked for (Kling's ``alg``/``typ``, Zhipu's
``alg``/``sign_type`` without a ``typ``); the simulator (``simulator.kling_auth``) accepts a
Kling token and answers Kling's codes, on its own clock."""

from __future__ import annotations

import json

import jwt
import pytest
from starlette.requests import Request

from simulator.kling_auth import authenticate
from workers.providers.jwt import sign_hs256

SECRET = "kling-secret-key-of-some-length"
NOW = 1_700_000_000


def test_a_kling_token_decodes_with_pyjwt() -> None:
    claims = {"iss": "ak", "exp": NOW + 1800, "nbf": NOW - 5}
    token = sign_hs256({"alg": "HS256", "typ": "JWT"}, claims, SECRET)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    decoded = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert decoded == claims
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "other", algorithms=["HS256"], options={"verify_exp": False})


def test_a_zhipu_header_gets_no_typ() -> None:
    token = sign_hs256({"alg": "HS256", "sign_type": "SIGN"}, {"api_key": "id"}, "s")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "sign_type": "SIGN"}


def request(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def code(answer: object) -> int:
    assert not isinstance(answer, str)
    return int(json.loads(answer.body)["code"])  # type: ignore[attr-defined]


def test_the_simulator_checks_the_window_on_its_own_clock() -> None:
    token = sign_hs256(
        {"alg": "HS256", "typ": "JWT"}, {"iss": "ak", "exp": NOW + 60, "nbf": NOW - 5}, SECRET
    )
    secrets = {"ak": SECRET}
    assert authenticate(request(token), secrets, NOW) == "ak"
    assert code(authenticate(request(token), secrets, NOW - 10)) == 1003
    assert code(authenticate(request(token), secrets, NOW + 60)) == 1004
    assert code(authenticate(request(token), {"ak": "wrong"}, NOW)) == 1002
    assert code(authenticate(request(token + "x"), secrets, NOW)) == 1002
    assert code(authenticate(request("not.a.jwt"), secrets, NOW)) == 1002
    unsigned = jwt.encode({"iss": "ak", "exp": NOW + 60}, None, algorithm="none")
    assert code(authenticate(request(unsigned), secrets, NOW)) == 1002
