"""The HTTP API's one mapping from errors to answers, and the two shapes an answer takes.

Routes raise; none builds an error response. ``RULES`` says, per error class, the status that
answers it, its code, message and field: every route shares it. Two surfaces, told apart by
path, answer some errors differently (``OPENAI``, ``UPLOADS``): the OpenAI facade
(``/v1/videos``) answers bad input with 400s naming OpenAI's parameters, in OpenAI's error body
with OpenAI's codes (``OPENAI_CODES``: a bad token is ``invalid_api_key``);
the upload route's one input is its ``file``. An error is answered by the rule of the nearest
class in its MRO, so ``JobNotFound`` (also a ``KeyError``) is a 404 while a bug's plain
``KeyError`` falls through to ``Exception``: a 500, logged with its traceback.

The contract (docs/design.md §6): bad input is a 4xx naming the field; an unknown id — or
another producer's — is a 404; Redis or S3 trouble is a 503; a 500 only for a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from producer import openai_videos, web
from producer.web import MissingToken, RouteError
from workers.domain.errors import (
    CancelRefused,
    ConfigError,
    IdempotencyConflict,
    InvalidCursor,
    InvalidSpec,
    JobNotFound,
    PermanentError,
    RetryableError,
    TenantNotAllowed,
    UploadTooLarge,
    VidqueueError,
)
from workers.redis import records
from workers.redis.stats import note_rejected

log = logging.getLogger("vidqueue.api")

Surface = Literal["jobs", "uploads", "openai"]


@dataclass(frozen=True)
class Answer:
    """What an error becomes on the wire; fixed when made."""

    status: int
    code: str
    message: str
    field: str | None = None


Rule = Callable[[Any], Answer]


class ErrorDetail(BaseModel):
    """An error as ``render`` sends it off the facade (documentation only: ``producer.openapi``)."""

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no such job"])
    field: str | None = Field(None, description="the input it names; absent when none")


class ErrorBody(BaseModel):
    """vidqueue's error body: ``{"error": {"code", "message", "field"}}``."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    """An error as ``render`` sends it on the facade (``_openai``): OpenAI's shape."""

    message: str = Field(examples=["No video found with id 'job_123'"])
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(examples=["video_id"])
    code: str = Field(examples=["not_found"])


class OpenAIErrorBody(BaseModel):
    """OpenAI's error body (``/v1/videos``): ``{"error": {"message", "type", "param", "code"}}``."""

    error: OpenAIErrorDetail


_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed"}
_STORAGE_DOWN: Final = Answer(503, "unavailable", "storage is unavailable; try again")
_STORE_DOWN: Final = Answer(503, "unavailable", "the job store is unavailable; try again")
# Redis refusing writes: a 503 that says why, so a producer (and an operator) can tell a full
# or read-only Redis from one that is down.
_STORE_FULL: Final = Answer(503, "unavailable", "the job store is out of memory; try again later")
_STORE_READONLY: Final = Answer(
    503, "unavailable", "the job store is read-only (a replica after a failover); try again"
)
_STORE_LOADING: Final = Answer(503, "unavailable", "the job store is loading its data; try again")
_BUG: Final = Answer(500, "internal_error", "an internal error; it was logged")


def _problem(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first problem FastAPI found in a request: its message, and the field it names."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return str(first.get("msg")), where or None


# error class → its answer, on every route unless a surface below says otherwise.
RULES: Final[dict[type[Exception], Rule]] = {
    RouteError: lambda e: Answer(e.status, e.code, e.message, e.field),
    RequestValidationError: lambda e: Answer(422, "invalid_request", *_problem(e)),
    StarletteHTTPException: lambda e: Answer(
        e.status_code, _HTTP_CODES.get(e.status_code, "http_error"), str(e.detail)
    ),
    JobNotFound: lambda e: Answer(404, e.code, e.message, "id"),
    InvalidSpec: lambda e: Answer(422, e.code, e.message, e.field),
    TenantNotAllowed: lambda e: Answer(403, e.code, e.message, e.field),
    IdempotencyConflict: lambda e: Answer(409, e.code, e.message, e.field),
    CancelRefused: lambda e: Answer(409, e.code, e.message),
    InvalidCursor: lambda e: Answer(400, e.code, e.message, "cursor"),
    ConfigError: lambda e: Answer(503, e.code, e.message),
    RetryableError: lambda _: _STORAGE_DOWN,
    PermanentError: lambda _: _STORAGE_DOWN,
    records.StoreUnavailable: lambda _: _STORE_DOWN,
    redis.exceptions.OutOfMemoryError: lambda _: _STORE_FULL,
    redis.exceptions.ReadOnlyError: lambda _: _STORE_READONLY,
    redis.exceptions.BusyLoadingError: lambda _: _STORE_LOADING,
    Exception: lambda _: _BUG,
}

# Where the OpenAI facade answers differently: 400 for bad input, OpenAI's parameter names,
# OpenAI's codes (``_openai``, applied to every answer on the surface by ``render``).
OPENAI: Final[dict[type[Exception], Rule]] = {
    RequestValidationError: lambda e: Answer(400, "invalid_value", *_problem(e)),
    JobNotFound: lambda e: Answer(404, e.code, f"No video found with id {e.job_id!r}", "video_id"),
    UploadTooLarge: lambda e: Answer(413, "too_large", e.message, "input_reference"),
    InvalidSpec: lambda e: Answer(400, e.code, e.message, openai_videos.param(e.field)),
    InvalidCursor: lambda e: Answer(400, e.code, e.message, "after"),
    MissingToken: lambda e: Answer(401, "missing_api_key", e.message),
}
# vidqueue's codes as OpenAI's (the rest are kept: OpenAI's clients read ``code`` as a string).
OPENAI_CODES: Final = {
    "unauthorized": "invalid_api_key",
    "invalid_spec": "invalid_value",
    "too_large": "request_too_large",
    "internal_error": "server_error",
}
# OpenAI's ``error.type`` by status; any other 4xx is an ``invalid_request_error``.
OPENAI_TYPES: Final = {429: "requests", 500: "server_error", 503: "server_error"}
_BAD_KEY: Final = "Incorrect API key provided. Send a valid one as 'Authorization: Bearer <token>'."
# OpenAI answers a request with no key at all with this message and a null ``code``.
_NO_KEY: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _openai(found: Answer) -> dict[str, Any]:
    """An answer in OpenAI's error body: ``{"message", "type", "param", "code"}``."""
    kind = OPENAI_TYPES.get(found.status)
    if kind is None:
        kind = "server_error" if found.status >= 500 else "invalid_request_error"
    code = OPENAI_CODES.get(found.code, found.code)
    message = _BAD_KEY if code == "invalid_api_key" else found.message
    if code == "missing_api_key":
        return {"message": _NO_KEY, "type": kind, "param": None, "code": None}
    return {"message": message, "type": kind, "param": found.field, "code": code}


# Where the upload route answers differently: its one input is the ``file``.
UPLOADS: Final[dict[type[Exception], Rule]] = {
    UploadTooLarge: lambda e: Answer(413, e.code, e.message, "file"),
    InvalidSpec: lambda e: Answer(422, e.code, e.message, "file"),
}

SURFACES: Final[dict[Surface, dict[type[Exception], Rule]]] = {
    "jobs": {},
    "openai": OPENAI,
    "uploads": UPLOADS,
}


def surface(path: str) -> Surface:
    """Which surface a request path is on."""
    if path.startswith(web.OPENAI_PREFIX):
        return "openai"
    return "uploads" if path == web.UPLOADS_PATH else "jobs"


def answer(exc: Exception, where: Surface = "jobs") -> Answer:
    """The answer to ``exc`` on surface ``where``: the rule of the nearest class in its MRO,
    the surface's own before the shared one."""
    own = SURFACES[where]
    for kind in type(exc).__mro__:
        rule = own.get(kind) or RULES.get(kind)
        if rule is not None:
            return rule(exc)
    return _BUG


def render(found: Answer, where: Surface) -> JSONResponse:
    """The answer as a JSON body: OpenAI's shape on the facade, vidqueue's elsewhere."""
    if where == "openai":
        return JSONResponse({"error": _openai(found)}, status_code=found.status)
    error: dict[str, Any] = {"code": found.code, "message": found.message}
    if found.field:
        error["field"] = found.field
    return JSONResponse({"error": error}, status_code=found.status)


async def handle(request: Request, exc: Exception) -> JSONResponse:
    """Every exception handler: answer by the tables; log what is the server's fault."""
    where = surface(request.url.path)
    found = answer(exc, where)
    note_rejected(exc)  # counted for /metrics when it is Redis refusing a write
    if found.status >= 500:
        detail = exc.message if isinstance(exc, VidqueueError) else type(exc).__name__
        trace = exc if found is _BUG else None
        log.error(
            "%s %s: %s (%s)", request.method, request.url.path, found.code, detail, exc_info=trace
        )
    return render(found, where)


def install(app: FastAPI) -> None:
    """Answer every error class the tables name with ``handle``."""
    for kind in {*RULES, *OPENAI, *UPLOADS}:
        app.add_exception_handler(kind, handle)
