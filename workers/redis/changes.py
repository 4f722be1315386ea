"""Each producer's change stream read back: the live job events behind ``GET /v1/events/stream``
and ``GET /v1/jobs/{id}/events?stream=true`` (``producer.api_events``).

The stream (``keys.changes(producer)``) is written by the job scripts themselves, in the call
that makes the change (``store_scripts.CHANGE_XADD``): one entry when a job is created and one
per move to another state, never another round trip. An entry's fields are ``id`` (the job),
``state``, ``at`` (Redis ``TIME``, epoch seconds as text), ``provider`` and ``model``; its
stream id (``1764640000000-0``) is the event id a client resumes after (``Last-Event-ID``).
The stream is capped (``VIDQUEUE_EVENTS_MAXLEN``, trimmed with ``MAXLEN ~``), so a client far
behind may find its place trimmed away: ``Snapshot.lost_after`` says so.

Reads that wait (``read``: ``XREAD BLOCK``) use an asyncio client (``connect.connect_async``),
so an open stream holds a Redis connection but no thread of the API's pool; ``entries`` is a
synchronous ``XRANGE`` for tests and tools.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import redis
import redis.asyncio

from workers.redis import keys

# A stream entry id as a client may send it back: ms, or ms-seq.
_ENTRY_ID: Final = re.compile(r"^\d{1,20}(?:-\d{1,20})?$")
# Before every entry: where a follower starts when the stream is empty.
BEGINNING: Final = "0-0"


class Change(TypedDict):
    """One entry of a change stream: ``event_id`` (its stream id) and the entry's fields."""

    event_id: str
    id: str
    state: str
    at: float
    provider: str
    model: str


def check_entry_id(text: str) -> str:
    """``text`` if it is a stream entry id (``1764640000000-0``; ``ms`` alone means ``ms-0``),
    else ``ValueError`` naming the problem."""
    text = text.strip()
    if not _ENTRY_ID.match(text):
        raise ValueError(f"{text[:40]!r} is not an event id (expected like 1764640000000-0)")
    return text if "-" in text else f"{text}-0"


def entry_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a sortable pair (ms, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def parse(entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> Change:
    """An entry as a ``Change`` (bytes or text, as the client answers)."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    return Change(
        event_id=_text(entry_id),
        id=text.get("id", ""),
        state=text.get("state", ""),
        at=float(text.get("at") or 0.0),
        provider=text.get("provider", ""),
        model=text.get("model", ""),
    )


def data(change: Change) -> dict[str, Any]:
    """The event's data as the API sends it: the entry's fields, without the event id."""
    return {name: value for name, value in change.items() if name != "event_id"}


@dataclass(frozen=True)
class Snapshot:
    """A change stream's position and, when asked, one job's state, read atomically (one
    ``MULTI``): every change after ``last_id`` happened after ``state`` was read.
    ``first_id``: the oldest entry kept (None when empty); ``trimmed``: whether the cap
    ever removed entries."""

    last_id: str
    first_id: str | None
    trimmed: bool
    state: str | None

    def lost_after(self, after: str) -> bool:
        """Whether entries after ``after`` may have been trimmed away (a resume from there
        would miss changes)."""
        if not self.trimmed or self.first_id is None:
            return False
        return entry_key(after) < entry_key(self.first_id)


async def snapshot(
    client: redis.asyncio.Redis, producer: str, job_id: str | None = None
) -> Snapshot:
    """The stream's position (and ``job_id``'s state: None when it is not in Redis)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xinfo_stream(keys.changes(producer))
        if job_id:
            pipe.hget(keys.job(job_id), "state")
        info, *state = await pipe.execute(raise_on_error=False)
    found = _text(state[0]) if state and state[0] is not None else None
    if isinstance(info, redis.ResponseError):  # no such stream yet
        return Snapshot(BEGINNING, None, False, found)
    if isinstance(info, Exception):
        raise info
    first = info.get("first-entry")
    added, length = info.get("entries-added"), int(info.get("length", 0))
    # Without ``entries-added`` (Redis < 7) trimming cannot be ruled out.
    trimmed = added is None or int(added) > length
    first_id = _text(first[0]) if first else None
    return Snapshot(_text(info["last-generated-id"]), first_id, trimmed, found)


async def read(
    client: redis.asyncio.Redis, producer: str, after: str, *, block_ms: int, count: int = 100
) -> list[Change]:
    """The entries after ``after`` (oldest first, at most ``count``), waiting up to
    ``block_ms`` for one to come (``XREAD BLOCK``); [] when none came."""
    stream = keys.changes(producer)
    answer = await client.xread({stream: after}, count=count, block=block_ms)
    return _changes(answer)


async def between(
    client: redis.asyncio.Redis, producer: str, after: str, until: str
) -> list[Change]:
    """The entries after ``after`` up to ``until`` (included), oldest first (``XRANGE``)."""
    raw: Any = await client.xrange(keys.changes(producer), f"({after}", until)
    return [parse(entry_id, fields) for entry_id, fields in raw or []]


def entries(
    client: redis.Redis, producer: str, after: str = BEGINNING, count: int | None = None
) -> list[Change]:
    """The entries after ``after``, oldest first (``XRANGE``, exclusive start)."""
    start = "-" if after == BEGINNING else f"({after}"
    raw: list[Any] = client.xrange(keys.changes(producer), start, "+", count=count)  # type: ignore[assignment]
    return [parse(entry_id, fields) for entry_id, fields in raw]


def _changes(answer: Any) -> list[Change]:
    """The entries of an ``XREAD`` answer of one stream (``[[name, [(id, fields), ...]]]``)."""
    if not answer:
        return []
    return [parse(entry_id, fields) for _, rows in answer for entry_id, fields in rows]


def _text(value: bytes | str | Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
