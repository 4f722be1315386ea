"""Live job events as Server-Sent Events: ``GET /v1/events/stream`` (every job of the caller's
producer identity) and ``GET /v1/jobs/{id}/events?stream=true`` (one job, until it ends; the
route is ``producer.api_jobs``'s, which hands the stream to ``job_stream`` here).

Each message is one entry of the producer's change stream (``workers.redis.changes``)::

    id: 1764640000000-0
    event: state
    data: {"id": "<job id>", "state": "running", "at": 1764640000.1, "provider": "", "model": ""}

A job's stream starts with the job's current state (its id: the change stream's last id at
that moment, read atomically with the state, so no change is missed or shown out of order)
and closes after a terminal state. ``Last-Event-ID`` (the header browsers send when they
reconnect, or ``?last_event_id=``) resumes: the entries after it are sent first; when the cap
(``VIDQUEUE_EVENTS_MAXLEN``) has trimmed them away, a job's stream sends its current state
instead. A ``: ping`` comment every ``PING_S`` keeps proxies from closing an idle stream.

The responses are ``sse-starlette``'s ``EventSourceResponse`` (it frames the messages, pings,
watches for the client's disconnect and for the server's shutdown, and cancels the generator
then). Waiting is ``XREAD BLOCK`` on an asyncio Redis client (``connect.connect_async``): an
open stream holds one Redis connection and no thread of the API's pool. When the client goes,
the cancelled read drops its connection (redis-py closes a connection whose command was
interrupted), so nothing stays blocked in Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import redis.asyncio
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from producer.openapi import errors
from producer.web import Producer, RouteError, client
from workers.domain.jobs import TERMINAL, JobRecord, parse_iso
from workers.redis import changes
from workers.redis.changes import Change
from workers.redis.connect import connect_async

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)

PING_S: Final = 10.0
# One XREAD waits this long at most (then loops): well under the connection's read timeout.
BLOCK_MS: Final = 10_000
READ_TIMEOUT_S: Final = BLOCK_MS / 1000 + 20
# Entries one XREAD returns at most.
BATCH: Final = 200
# ``?job=`` filters one stream takes at most.
MAX_JOB_FILTERS: Final = 100
EVENT: Final = "state"
# Lines end with LF (the spec allows CRLF too; every client takes LF).
SEP: Final = "\n"

_MESSAGE: Final = (
    "A stream of `text/event-stream` messages: `id:` the event id (resume after it with "
    "`Last-Event-ID`), `event: state`, `data:` a JSON object "
    '`{"id", "state", "at", "provider", "model"}` (`at`: epoch seconds); `: ping` comments '
    "keep it open."
)
SSE_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": _MESSAGE,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
LastEventId = Annotated[
    str | None,
    Header(alias="last-event-id", description="Resume after this event id (browsers send it)"),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(max_length=64, description="Resume after this event id (as Last-Event-ID)"),
]

# One asyncio client per event loop (a client's connections belong to the loop they were made
# on; the API has one, tests may start several) and Redis URL.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def _redis() -> redis.asyncio.Redis:
    settings = client().settings
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    found = per_loop.get(settings.redis_url)
    if found is None:
        found = connect_async(settings, socket_timeout=READ_TIMEOUT_S)
        per_loop[settings.redis_url] = found
    return found


@router.get(
    "/v1/events/stream",
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSE, **errors(400, 401, 422, 503)},
)
async def events_stream(
    producer: Producer,
    job: Annotated[
        list[str] | None, Query(max_length=128, description="Only these jobs; repeat the query")
    ] = None,
    last_event_id: LastEventIdQuery = None,
    last_event_id_header: LastEventId = None,
) -> EventSourceResponse:
    """Live state changes of all your jobs (their creation included) as Server-Sent Events;
    it never closes. `Last-Event-ID` resumes after an event: what came since is sent first."""
    after = resume_point(last_event_id or last_event_id_header)
    wanted = frozenset(job or ())
    if len(wanted) > MAX_JOB_FILTERS:
        raise RouteError(422, "invalid_request", f"at most {MAX_JOB_FILTERS} jobs", "job")
    # Read before the answer starts: Redis being down is a 503, not a stream that breaks.
    position = after or (await changes.snapshot(_redis(), producer)).last_id
    return _response(_producer_events(producer, position, wanted))


def job_stream(job_id: str, producer: str, last_event_id: str | None) -> EventSourceResponse:
    """One job's live events (``GET /v1/jobs/{id}/events?stream=true``): a 404 for an unknown
    job (or another producer's) and a 400 for a bad ``Last-Event-ID``, both before the stream
    starts. Called from a synchronous route (the record is read in the thread pool)."""
    after = resume_point(last_event_id)
    record = client().read(job_id, producer=producer)
    return _response(_job_events(record, producer, after))


def resume_point(value: str | None) -> str | None:
    """The event id to resume after, or None to start from now; 400 naming a bad one."""
    if not value:
        return None
    try:
        return changes.check_entry_id(value)
    except ValueError as exc:
        raise RouteError(400, "invalid_request", str(exc), "last_event_id") from None


def _response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=PING_S,
        sep=SEP,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep=SEP),
    )


def message(change: Change) -> ServerSentEvent:
    """One change as an SSE message."""
    return ServerSentEvent(
        data=json.dumps(changes.data(change)), event=EVENT, id=change["event_id"], sep=SEP
    )


async def _producer_events(
    producer: str, after: str, wanted: frozenset[str]
) -> AsyncIterator[ServerSentEvent]:
    async for change in _follow(_redis(), producer, after):
        if not wanted or change["id"] in wanted:
            yield message(change)


async def _job_events(
    record: JobRecord, producer: str, after: str | None
) -> AsyncIterator[ServerSentEvent]:
    r = _redis()
    try:
        first, position = await _job_start(r, record, producer, after)
    except redis.RedisError as exc:
        log.warning("live events: reading the change stream failed, closing: %s", exc)
        return
    for change in first:
        yield message(change)
    if position is None:
        return
    async for change in _follow(r, producer, position):
        if change["id"] == record.id:
            yield message(change)
            if change["state"] in TERMINAL:
                return


async def _job_start(
    r: redis.asyncio.Redis, record: JobRecord, producer: str, after: str | None
) -> tuple[list[Change], str | None]:
    """What a job's stream sends first, and the position to follow on from (None: the job
    has ended, the stream closes). Without ``after`` (or when the cap trimmed what came after
    it): the job's state now. Resuming: the job's entries after ``after``; for a finished job
    also its end, when that was not among them."""
    snap = await changes.snapshot(r, producer, record.id)
    # A job no longer in Redis was read from the archive: it is finished.
    state = snap.state or str(record.state)
    now = Change(
        event_id=snap.last_id,
        id=record.id,
        state=state,
        at=_last_moment(record),
        provider=record.provider,
        model=record.model,
    )
    if after is None or snap.lost_after(after):
        return [now], None if state in TERMINAL else snap.last_id
    if state not in TERMINAL:
        return [], after
    between = await changes.between(r, producer, after, snap.last_id)
    missed = [c for c in between if c["id"] == record.id]
    if not missed or missed[-1]["state"] not in TERMINAL:
        missed.append(now)
    return missed, None


async def _follow(r: redis.asyncio.Redis, producer: str, after: str) -> AsyncIterator[Change]:
    """Every entry after ``after``, as it comes (a blocking ``XREAD`` at a time). Redis
    failing ends the stream (logged): the client reconnects with ``Last-Event-ID`` and loses
    nothing, which beats an error in the middle of a 200."""
    while True:
        try:
            found = await changes.read(r, producer, after, block_ms=BLOCK_MS, count=BATCH)
        except redis.RedisError as exc:
            log.warning("live events: reading the change stream failed, closing: %s", exc)
            return
        for change in found:
            after = change["event_id"]
            yield change


def _last_moment(record: JobRecord) -> float:
    """When the record last changed, as far as its timestamps say (epoch seconds)."""
    moments = (
        record.completed_at,
        record.provider_finished_at,
        record.submitted_at,
        record.created_at,
    )
    return max(parse_iso(m).timestamp() for m in moments if m)
