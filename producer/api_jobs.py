"""The ``/v1/jobs`` routes: create (one, or a batch), list, read, cancel, timeline, files.

Each bearer token is a producer identity: a producer sees, cancels and downloads only its own
jobs. Routes raise; ``producer.api_errors`` answers (an unknown id — or another producer's —
is ``JobNotFound``: a 404).
"""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from producer import api_events, web
from producer.dispatches import Dispatches
from producer.openapi import errors
from producer.tokens import Caller
from producer.web import Producer, RouteError, caller_from, client
from workers.domain.jobs import JobRecord, JobSpec, State
from workers.redis import listing

router = APIRouter(tags=["jobs"])

_CREATE_HEADERS: Final = ("authorization", "idempotency-key")
_SPEC: Final = {"application/json": {"schema": JobSpec.model_json_schema()}}
_SPEC_BODY: Final = web.openapi_body(_SPEC, *_CREATE_HEADERS)
_JOBS: Final = {"type": "array", "maxItems": 1000, "items": {"type": "object"}}
_BATCH: Final = {"type": "object", "required": ["jobs"], "properties": {"jobs": _JOBS}}
_BATCH_BODY: Final = web.openapi_body({"application/json": {"schema": _BATCH}}, *_CREATE_HEADERS)
_TWO_KEYS: Final = "the Idempotency-Key header and the spec's idempotency_key differ"
_CREATE_ERRORS: Final = errors(400, 401, 403, 409, 413, 422, 503)
_ONE_JOB_ERRORS: Final = errors(401, 404, 503)
_REDIRECT: Final[dict[int | str, dict[str, Any]]] = {
    302: {"description": "Found: Location is a fresh presigned URL"}
}


class JobList(BaseModel):
    jobs: list[JobRecord]


class Timeline(BaseModel):
    id: str
    events: list[dict[str, Any]]


def _caller(request: Request) -> tuple[Caller, str | None]:
    """The caller (see ``web.caller_from``) and the ``Idempotency-Key``, read directly: the create
    routes are the hot path, and FastAPI's parameter machinery costs more than these two
    lookups."""
    headers = request.headers
    return caller_from(request), headers.get("idempotency-key")


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobRecord,
    openapi_extra=_SPEC_BODY,
    responses=_CREATE_ERRORS,
)
async def create_job(request: Request) -> Response:
    """Enqueue one job. The ``Idempotency-Key`` header makes a retried POST return the same
    job; the same key with a different spec is a 409. Its fair-share key is the token's
    tenant: a ``labels.tenant`` the token may not name is a 403 (``producer.tokens``)."""
    who, idempotency_key = _caller(request)
    spec = await web.json_object(request)
    if idempotency_key:
        if spec.get("idempotency_key") not in (None, idempotency_key):
            raise RouteError(400, "invalid_request", _TWO_KEYS, "idempotency_key")
        spec["idempotency_key"] = idempotency_key
    accept = partial(
        client().accept, [spec], producer=who.producer, one=True, dispatch=False, fair=who.fair_key
    )
    # Checking an image or a callback URL may take I/O (S3, DNS): that is done in a thread.
    # An upload's ownership check waits on S3 at most ``s3_request_deadline_s`` (a 503 after),
    # and only so many such checks wait at once (``producer.files``): the pool stays free.
    # Otherwise accepting is one short Redis call, made on the event loop (no thread hops).
    inline = not (spec.get("image") or spec.get("callback_url"))
    accepted = accept() if inline else await run_in_threadpool(accept)
    return _accepted(accepted.json()[0], accepted.providers)


@router.post(
    "/v1/jobs/batch",
    status_code=202,
    response_model=JobList,
    openapi_extra=_BATCH_BODY,
    responses=_CREATE_ERRORS,
)
async def create_jobs(request: Request) -> Response:
    """Enqueue up to 1,000 jobs, all or none: every spec is validated first (a bad one is a
    422 naming ``jobs.{index}.{field}``), then all are created by one Redis script call. With
    ``Idempotency-Key``, job *i* gets the key ``{key}:{i}``: a retried batch is the same jobs.
    A tenant the token may not name is a 403 naming ``jobs.{index}.labels.tenant``."""
    who, idempotency_key = _caller(request)
    body = await web.json_object(request, web.MAX_BATCH_BODY)
    specs = body.get("jobs")
    if not isinstance(specs, list):
        raise RouteError(422, "invalid_request", "must be a list of job specs", "jobs")
    unknown = sorted(set(body) - {"jobs"})
    if unknown:
        raise RouteError(422, "invalid_request", "unknown field", unknown[0])
    accepted = await run_in_threadpool(
        client().accept,
        specs,
        producer=who.producer,
        idempotency_key=idempotency_key,
        dispatch=False,
        fair=who.fair_key,
    )
    return _accepted('{"jobs":[' + ",".join(accepted.json()) + "]}", accepted.providers)


def _accepted(text: str, providers: list[str]) -> Response:
    """A 202 with records rendered once, from what was stored (see ``Accepted.json``): the
    same JSON as the response model gives, without validating it again. The providers' free
    slots are filled right after the answer is sent."""
    dispatch = BackgroundTask(_dispatches.soon, providers)
    return Response(text.encode(), 202, media_type="application/json", background=dispatch)


# Fills providers' free slots after enqueues (coalesced: see ``Dispatches``).
_dispatches: Final = Dispatches(lambda providers: client().dispatch(providers))


@router.get("/v1/jobs", response_model=listing.JobPage, responses=errors(400, 401, 422, 503))
def list_jobs(
    producer: Producer,
    state: State | None = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[list[str] | None, Query(description="key:value; repeat to AND")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    archived_on: Annotated[
        date | None, Query(description="YYYY-MM-DD: jobs created that UTC day, archived")
    ] = None,
) -> listing.JobPage:
    """Your jobs, newest first. Follow ``next_cursor`` until it is null (a page may be short
    while more remain, when filters match few jobs). Jobs leave Redis for the S3 archive
    after the hot window (``VIDQUEUE_HOT_RETENTION_S``); ``archived_on`` pages through one
    day of the archive (by the jobs' creation day, UTC), oldest first."""
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise RouteError(422, "invalid_request", f"expected key:value, got {item!r}", "label")
        labels[key] = value
    return client().list(
        state=state,
        provider=provider,
        labels=labels,
        limit=limit,
        cursor=cursor,
        producer=producer,
        archived_on=archived_on,
    )


@router.get("/v1/jobs/{job_id}", response_model=JobRecord, responses=_ONE_JOB_ERRORS)
def get_job(job_id: str, producer: Producer) -> JobRecord:
    return client().read(job_id, producer=producer)


@router.delete("/v1/jobs/{job_id}", response_model=JobRecord, responses=errors(401, 404, 409, 503))
def cancel_job(job_id: str, producer: Producer) -> JobRecord:
    """Cancel: a queued job at once; a running one at the provider where it can be (elsewhere it
    keeps its slot until the provider finishes). 409 ``cannot_cancel`` once mirroring/finished,
    409 ``job_archived`` once it has left Redis for the archive."""
    return client().cancel(job_id, producer=producer)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_model=Timeline,
    responses={
        200: {"content": api_events.SSE_RESPONSE[200]["content"]},
        **errors(400, 401, 404, 503),
    },
)
def job_events(
    job_id: str,
    producer: Producer,
    stream: Annotated[
        bool, Query(description="Live: Server-Sent Events until the job ends (text/event-stream)")
    ] = False,
    last_event_id: api_events.LastEventIdQuery = None,
    last_event_id_header: api_events.LastEventId = None,
) -> Timeline | Response:
    """The job's timeline: each transition and attempt, with its UTC timestamp. With
    ``stream=true``: its state changes live, as Server-Sent Events (``producer.api_events``):
    first its current state, then each change, closed after a terminal state;
    ``Last-Event-ID`` resumes after an event."""
    if stream:
        return api_events.job_stream(job_id, producer, last_event_id or last_event_id_header)
    return Timeline(id=job_id, events=client().events(job_id, producer=producer))


@router.get(
    "/v1/jobs/{job_id}/video",
    status_code=302,
    response_class=RedirectResponse,
    responses={**_REDIRECT, **errors(401, 404, 409, 503)},
)
def job_video(job_id: str, producer: Producer) -> RedirectResponse:
    """302 to a fresh presigned URL of the mirrored video."""
    return _redirect(job_id, producer, "video")


@router.get(
    "/v1/jobs/{job_id}/cover",
    status_code=302,
    response_class=RedirectResponse,
    responses={**_REDIRECT, **errors(401, 404, 409, 503)},
)
def job_cover(job_id: str, producer: Producer) -> RedirectResponse:
    """302 to a fresh presigned URL of the mirrored cover image."""
    return _redirect(job_id, producer, "cover")


def _redirect(job_id: str, producer: str, what: Literal["video", "cover"]) -> RedirectResponse:
    record = client().read(job_id, producer=producer)
    if record.state != State.SUCCEEDED:
        raise RouteError(409, "not_ready", f"job {job_id} is {record.state}: nothing mirrored yet")
    item = (record.result or {}).get(what)
    if item is None:
        raise RouteError(404, "not_found", f"job {job_id} has no {what}")
    return RedirectResponse(item["url"], status_code=302)
