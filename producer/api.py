"""The HTTP API for backends in any language (ASGI app: ``producer.api:app``).

Errors have one JSON shape: ``{"error": {"code": ..., "message": ..., "field": ...}}`` (OpenAI's
shape under ``/v1/videos``). Bad input is a 4xx naming the field; an unknown id — or another
producer's — is 404; Redis or S3 trouble is 503; never a 500. Each bearer token is a producer
identity: a producer sees, cancels and downloads only its own jobs and uploads.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Final, Literal

import redis
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from producer import batch, metrics, openai_facade, web
from producer.web import ApiError, Producer, client, error_response, producer_identity
from workers.domain.errors import (
    CancelRefused,
    ConfigError,
    IdempotencyConflict,
    InvalidCursor,
    InvalidSpec,
    PermanentError,
    RetryableError,
)
from workers.domain.jobs import JobRecord, JobSpec, State
from workers.io.uploads import MAX_UPLOAD_BYTES
from workers.redis.listing import JobPage

__all__ = ["app", "client", "producer_identity"]

log = logging.getLogger("vidqueue.api")


def _body(content: dict[str, Any], *headers: str) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` (and header parameters) for routes that read them
    themselves."""
    params = [{"name": h, "in": "header", "schema": {"type": "string"}} for h in headers]
    return {"requestBody": {"required": True, "content": content}, "parameters": params}


_BINARY: Final = {"type": "string", "format": "binary"}
_CREATE_HEADERS: Final = ("authorization", "idempotency-key")
_SPEC: Final = {"application/json": {"schema": JobSpec.model_json_schema()}}
_SPEC_BODY: Final = _body(_SPEC, *_CREATE_HEADERS)
_JOBS: Final = {"type": "array", "maxItems": 1000, "items": {"type": "object"}}
_BATCH: Final = {"type": "object", "required": ["jobs"], "properties": {"jobs": _JOBS}}
_BATCH_BODY: Final = _body({"application/json": {"schema": _BATCH}}, *_CREATE_HEADERS)
_FILE: Final = {"type": "object", "properties": {"file": _BINARY}}
_UPLOAD_BODY: Final = _body(
    {
        "image/png": {"schema": _BINARY},
        "image/jpeg": {"schema": _BINARY},
        "multipart/form-data": {"schema": _FILE},
    }
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Read the providers file at startup, so a bad one stops the API with a clear error.
    Then everything loaded so far is left out of garbage collection (``gc.freeze``), which
    keeps the collector's pauses out of request latencies."""
    client().validate_config()
    gc.collect()
    gc.freeze()
    yield


app = FastAPI(
    title="vidqueue",
    version="0.1.0",
    description="A job queue for AI video generation. Enqueue jobs, read their records.",
    lifespan=lifespan,
)
app.include_router(openai_facade.router)
app.include_router(metrics.router)


# -- errors --------------------------------------------------------------------------------


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.code, exc.message, exc.field)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    status = 400 if request.url.path.startswith(web.OPENAI_PREFIX) else 422
    return error_response(request, status, "invalid_request", str(first.get("msg")), where or None)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail))


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    """The request's own fault, named by the error: its code, message and field."""
    assert isinstance(exc, InvalidSpec | IdempotencyConflict | CancelRefused | InvalidCursor)
    status = 422 if isinstance(exc, InvalidSpec) else 400 if isinstance(exc, InvalidCursor) else 409
    field = "cursor" if isinstance(exc, InvalidCursor) else getattr(exc, "field", None)
    return error_response(request, status, exc.code, exc.message, field)


for _refusal in (InvalidSpec, IdempotencyConflict, CancelRefused, InvalidCursor):
    app.add_exception_handler(_refusal, _refused)


@app.exception_handler(RetryableError)
@app.exception_handler(PermanentError)
async def _storage_error(request: Request, exc: RetryableError | PermanentError) -> JSONResponse:
    log.error("storage unavailable: %s", exc.message)
    return error_response(request, 503, "unavailable", "storage is unavailable; try again")


@app.exception_handler(redis.RedisError)
async def _redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
    log.error("redis unavailable: %s", type(exc).__name__)
    return error_response(request, 503, "unavailable", "the job store is unavailable; try again")


@app.exception_handler(ConfigError)
async def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
    return error_response(request, 503, "config_error", exc.message)


@app.exception_handler(Exception)
async def _bug(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged with its traceback, answered in the usual shape."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal_error", "an internal error; it was logged")


# -- jobs ----------------------------------------------------------------------------------


class JobList(BaseModel):
    jobs: list[JobRecord]


class Timeline(BaseModel):
    id: str
    events: list[dict[str, Any]]


class UploadOut(BaseModel):
    id: str
    image: str
    content_type: str
    size: int
    sha256: str


def _found(job_id: str, producer: str) -> JobRecord:
    record = client().get(job_id, producer=producer) if len(job_id) <= 128 else None
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}", "id")
    return record


def _caller(request: Request) -> tuple[str, str | None]:
    """The producer (see ``producer_identity``) and the ``Idempotency-Key``, read directly:
    the create routes are the hot path, and FastAPI's parameter machinery costs more than
    these two lookups."""
    headers = request.headers
    return producer_identity(headers.get("authorization")), headers.get("idempotency-key")


_TWO_KEYS: Final = "the Idempotency-Key header and the spec's idempotency_key differ"


@app.post("/v1/jobs", status_code=202, response_model=JobRecord, openapi_extra=_SPEC_BODY)
async def create_job(request: Request) -> Response:
    """Enqueue one job. The ``Idempotency-Key`` header makes a retried POST return the same
    job; the same key with a different spec is a 409."""
    producer, idempotency_key = _caller(request)
    spec = await web.json_object(request)
    if idempotency_key:
        if spec.get("idempotency_key") not in (None, idempotency_key):
            raise ApiError(400, "invalid_request", _TWO_KEYS, "idempotency_key")
        spec["idempotency_key"] = idempotency_key
    accept = partial(client().accept, [spec], producer=producer, one=True, dispatch=False)
    # Checking an image or a callback URL may take I/O (S3, DNS): that is done in a thread.
    # Otherwise accepting is one short Redis call, made on the event loop (no thread hops).
    inline = not (spec.get("image") or spec.get("callback_url"))
    accepted = accept() if inline else await run_in_threadpool(accept)
    return _accepted(accepted.json()[0], accepted.providers)


@app.post("/v1/jobs/batch", status_code=202, response_model=JobList, openapi_extra=_BATCH_BODY)
async def create_jobs(request: Request) -> Response:
    """Enqueue up to 1,000 jobs, all or none: every spec is validated first (a bad one is a
    422 naming ``jobs.{index}.{field}``), then all are created by one Redis script call. With
    ``Idempotency-Key``, job *i* gets the key ``{key}:{i}``: a retried batch is the same jobs."""
    producer, idempotency_key = _caller(request)
    body = await web.json_object(request, web.MAX_BATCH_BODY)
    specs = body.get("jobs")
    if not isinstance(specs, list):
        raise ApiError(422, "invalid_request", "must be a list of job specs", "jobs")
    unknown = sorted(set(body) - {"jobs"})
    if unknown:
        raise ApiError(422, "invalid_request", "unknown field", unknown[0])
    accepted = await run_in_threadpool(
        client().accept, specs, producer=producer, idempotency_key=idempotency_key, dispatch=False
    )
    return _accepted('{"jobs":[' + ",".join(accepted.json()) + "]}", accepted.providers)


def _accepted(text: str, providers: list[str]) -> Response:
    """A 202 with records rendered once, from what was stored (see ``workers.redis.enqueue``): the
    same JSON as the response model gives, without validating it again. The providers' free
    slots are filled right after the answer is sent."""
    dispatch = BackgroundTask(_dispatches.soon, providers)
    return Response(text.encode(), 202, media_type="application/json", background=dispatch)


# Fills providers' free slots after enqueues (coalesced: see ``batch.Dispatches``).
_dispatches: Final = batch.Dispatches(lambda providers: client().dispatch(providers))


@app.get("/v1/jobs", response_model=JobPage)
def list_jobs(
    producer: Producer,
    state: State | None = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[list[str] | None, Query(description="key:value; repeat to AND")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> JobPage:
    """Your jobs, newest first. Follow ``next_cursor`` until it is null (a page may be short
    while more remain, when filters match few jobs)."""
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ApiError(422, "invalid_request", f"expected key:value, got {item!r}", "label")
        labels[key] = value
    return client().list(
        state=state, provider=provider, labels=labels, limit=limit, cursor=cursor, producer=producer
    )


@app.get("/v1/jobs/{job_id}", response_model=JobRecord)
def get_job(job_id: str, producer: Producer) -> JobRecord:
    return _found(job_id, producer)


@app.delete("/v1/jobs/{job_id}", response_model=JobRecord)
def cancel_job(job_id: str, producer: Producer) -> JobRecord:
    """Cancel: a queued job at once; a running one at the provider where it can be (elsewhere it
    keeps its slot until the provider finishes). 409 ``cannot_cancel`` once mirroring/finished."""
    _found(job_id, producer)
    try:
        return client().cancel(job_id, producer=producer)
    except KeyError:
        raise ApiError(404, "not_found", f"no job {job_id}", "id") from None


@app.get("/v1/jobs/{job_id}/events", response_model=Timeline)
def job_events(job_id: str, producer: Producer) -> Timeline:
    """The job's timeline: each transition and attempt, with its UTC timestamp."""
    _found(job_id, producer)
    return Timeline(id=job_id, events=client().events(job_id))


@app.get("/v1/jobs/{job_id}/video", status_code=302, response_class=RedirectResponse)
def job_video(job_id: str, producer: Producer) -> RedirectResponse:
    """302 to a fresh presigned URL of the mirrored video."""
    return _redirect(job_id, producer, "video")


@app.get("/v1/jobs/{job_id}/cover", status_code=302, response_class=RedirectResponse)
def job_cover(job_id: str, producer: Producer) -> RedirectResponse:
    """302 to a fresh presigned URL of the mirrored cover image."""
    return _redirect(job_id, producer, "cover")


def _redirect(job_id: str, producer: str, what: Literal["video", "cover"]) -> RedirectResponse:
    record = _found(job_id, producer)
    if record.state != State.SUCCEEDED:
        raise ApiError(409, "not_ready", f"job {job_id} is {record.state}: nothing mirrored yet")
    item = (record.result or {}).get(what)
    if item is None:
        raise ApiError(404, "not_found", f"job {job_id} has no {what}")
    return RedirectResponse(item["url"], status_code=302)


# -- uploads -------------------------------------------------------------------------------


@app.post("/v1/uploads", status_code=201, response_model=UploadOut, openapi_extra=_UPLOAD_BODY)
async def upload(request: Request, producer: Producer) -> UploadOut:
    """Store an image (PNG or JPEG by content, ≤ 5 MB), as the raw body or a multipart ``file``
    part. The returned ``image`` is usable as a job spec's ``image`` (yours only)."""
    data = await _upload_bytes(request)
    try:
        stored = await run_in_threadpool(client().upload, data, producer=producer)
    except InvalidSpec as exc:
        status = 413 if "larger" in exc.message else 422
        raise ApiError(status, exc.code, exc.message, "file") from None
    return UploadOut(**stored.as_dict())


async def _upload_bytes(request: Request) -> bytes:
    if not web.is_multipart(request):
        return await web.read_body(request, MAX_UPLOAD_BYTES, "file")
    form = await web.read_form(request, MAX_UPLOAD_BYTES + web.MULTIPART_OVERHEAD, "file")
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if len(files) != 1:
        raise ApiError(422, "invalid_request", "send exactly one file part", "file")
    return await files[0].read()


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    client().deps.redis.ping()
    return {"ok": True}
