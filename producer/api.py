"""The HTTP API for backends in any language (ASGI app: ``producer.api:app``).

Errors have one JSON shape: ``{"error": {"code": ..., "message": ..., "field": ...}}``. Bad
input is a 4xx naming the field; an unknown id is 404; Redis trouble is 503; never a 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.settings import get_settings
from producer.client import Client
from workers.errors import ConfigError, InvalidSpec
from workers.jobs import JobRecord

log = logging.getLogger("vidqueue.api")

_client: Client | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Read the providers file at startup, so a bad one stops the API with a clear error."""
    client().validate_config()
    yield


app = FastAPI(
    title="vidqueue",
    version="0.1.0",
    description="A job queue for AI video generation. Enqueue jobs, read their records.",
    lifespan=lifespan,
)


def client() -> Client:
    global _client
    if _client is None:
        _client = Client(get_settings())
    return _client


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


@app.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return _error(exc.status, exc.code, exc.message, exc.field)


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return _error(422, "invalid_request", str(first.get("msg")), where or None)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, "http_error", str(exc.detail))


@app.exception_handler(redis.RedisError)
async def _redis_error(_: Request, exc: redis.RedisError) -> JSONResponse:
    log.error("redis unavailable: %s", type(exc).__name__)
    return _error(503, "unavailable", "the job store is unavailable; try again")


@app.exception_handler(ConfigError)
async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
    return _error(503, "config_error", exc.message)


def producer_identity(authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's identity (a hash of its bearer token); 401 when tokens are required."""
    tokens = get_settings().api_token_set
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    token = token.strip()
    if not tokens:
        return "anonymous" if not token else _identity(token)
    if token not in tokens:
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
    return _identity(token)


def _identity(token: str) -> str:
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


Producer = Annotated[str, Depends(producer_identity)]


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object (a job spec)")
    return data


@app.post("/v1/jobs", status_code=202, response_model=JobRecord)
async def create_job(
    request: Request,
    producer: Producer,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JobRecord:
    """Enqueue one job. The ``Idempotency-Key`` header makes a retried POST return the same job."""
    spec = await _json_object(request)
    if idempotency_key:
        spec["idempotency_key"] = idempotency_key
    try:
        record: JobRecord = await run_in_threadpool(client().enqueue, spec, producer=producer)
        return record
    except InvalidSpec as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from None


@app.get("/v1/jobs/{job_id}", response_model=JobRecord)
def get_job(job_id: str, _: Producer) -> JobRecord:
    record = client().get(job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return record


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    client().deps.redis.ping()
    return {"ok": True}
