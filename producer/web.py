"""What every HTTP route shares: the client, auth (a bearer token, or the dashboard's session
cookie: ``producer.ui_session``), bounded body reading, the error a route raises for its own
refusals (``RouteError``), and OpenAPI descriptions of bodies a route reads itself. How errors
are answered is ``producer.api_errors``'s one concern."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Final, NoReturn

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from config.settings import get_settings
from producer import tokens, ui_session
from producer.client import Client
from producer.tokens import Caller
from producer.tokens import identity as identity

OPENAI_PREFIX: Final = "/v1/videos"
UPLOADS_PATH: Final = "/v1/uploads"
# A data: URI image of 5 MB is about 6.7 MB of base64; the rest of a spec is small.
MAX_JOB_BODY: Final = 8 * 1024 * 1024
MAX_BATCH_BODY: Final = 64 * 1024 * 1024
MULTIPART_OVERHEAD: Final = 64 * 1024

_client: Client | None = None


def client() -> Client:
    """The process's client, built on first use from the settings."""
    global _client
    if _client is None:
        _client = Client(get_settings())
    return _client


class RouteError(Exception):
    """A route's own refusal: the status, code and field a client can act on, fixed when it
    is raised (``producer.api_errors`` answers it as it is)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def known_caller(token: str) -> Caller | None:
    """The caller a token is, or None when tokens are required and this is none of them.
    Without tokens every caller is trusted: its identity is a hash of whatever token it
    sends (no token: ``anonymous``), and it may name any tenant."""
    settings = get_settings()
    known = tokens.load(settings.api_tokens, settings.api_tokens_file)
    if not known.known:
        return Caller("anonymous" if not token else identity(token), None)
    return known.find(token) if token else None


class MissingToken(RouteError):
    """A 401 for a request that sent no bearer token at all (``unauthorized``, as a wrong one
    is; the OpenAI surface tells the two apart, as OpenAI does)."""

    def __init__(self) -> None:
        super().__init__(
            401, "unauthorized", "no token was sent: send 'Authorization: Bearer <token>'"
        )


def caller(authorization: str | None = None) -> Caller:
    """Who sent a request (see ``producer.tokens``), from its ``Authorization`` header; a 401
    when tokens are required and this is none of them (``MissingToken`` when none was sent)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    found = known_caller(token)
    if found is None and not (authorization or "").strip():
        raise MissingToken()
    if found is None:
        raise RouteError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
    return found


def caller_from(request: Request) -> Caller:
    """Who sent a request: its ``Authorization`` header when it has one, else the dashboard's
    session cookie (``producer.ui_session``), whose token is checked as a bearer token is. A
    request the cookie authenticates with an unsafe method needs the session's CSRF token
    (403 ``csrf_failed``)."""
    authorization = request.headers.get("authorization")
    session = ui_session.session_of(request) if authorization is None else None
    if session is None:
        return caller(authorization)
    found = known_caller(session)
    if found is None:
        raise RouteError(
            401, "unauthorized", "the session's token is no longer valid: log in again at /ui/login"
        )
    if not ui_session.csrf_ok(request, session):
        raise RouteError(
            403,
            "csrf_failed",
            "a request authenticated by the session cookie needs the page's CSRF token "
            "in the 'X-CSRF-Token' header",
            "X-CSRF-Token",
        )
    return found


def request_caller(request: Request) -> Caller:
    """``caller_from`` as a FastAPI dependency (``Who``), for routes that need the tenants too."""
    return caller_from(request)


def producer_identity(request: Request) -> str:
    """The caller's producer identity: the token's name, or a hash of a plain token."""
    return caller_from(request).producer


Producer = Annotated[str, Depends(producer_identity)]
Who = Annotated[Caller, Depends(request_caller)]


def openapi_body(content: dict[str, Any], *headers: str) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` (and header parameters) for a route that reads them itself,
    so ``/docs`` still shows what it takes."""
    params = [{"name": h, "in": "header", "schema": {"type": "string"}} for h in headers]
    return {"requestBody": {"required": True, "content": content}, "parameters": params}


async def read_body(request: Request, limit: int, field: str | None = None) -> bytes:
    """The request body, refused with 413 (naming ``field``) once it is longer than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        _too_large(limit, field)
    size, parts = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            _too_large(limit, field)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int, field: str | None) -> NoReturn:
    raise RouteError(413, "too_large", f"the body is larger than {limit // 1024} KiB", field)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no lone surrogates, no absurd nesting (all 400)."""
    try:
        data = json.loads(body or b"null", parse_constant=_no_constants)
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise RouteError(
            400, "invalid_json", "the body holds invalid unicode (a lone surrogate)"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise RouteError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    return data


async def json_object(request: Request, limit: int = MAX_JOB_BODY) -> dict[str, Any]:
    data = parse_json(await read_body(request, limit))
    if not isinstance(data, dict):
        raise RouteError(400, "invalid_json", "the body must be a JSON object")
    return data


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request, limit: int, field: str | None = None) -> FormData:
    """A multipart body of at most ``limit`` bytes (files included)."""
    body = await read_body(request, limit, field)

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, replay(), max_files=4, max_fields=32, max_part_size=limit
    )
    try:
        return await parser.parse()
    except (MultiPartException, ValueError, KeyError) as exc:
        message = exc.message if isinstance(exc, MultiPartException) else "invalid multipart data"
        raise RouteError(400, "invalid_multipart", message) from None
