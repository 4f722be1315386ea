"""Live job events over Server-Sent Events on the live stack (``producer.api_events``): one job
followed from queued to succeeded, a resume with Last-Event-ID, the producer-wide stream that
shows only the token's own jobs, the errors before a stream starts, ``AsyncClient.stream``
(reconnecting after a dropped connection), the Redis connection released when a client goes,
and the XADDs one job costs (``INFO commandstats``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from producer.aio import AsyncClient
from producer.tokens import identity
from tests.support.live import API_TOKEN, LiveStack
from workers.domain.errors import JobNotFound
from workers.domain.jobs import TERMINAL
from workers.redis import changes

AUTH = {"authorization": f"Bearer {API_TOKEN}"}
GOOD = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lighthouse at dusk"}
PATH = ["queued", "submitting", "running", "mirroring", "succeeded"]
ME = identity(API_TOKEN)
TIMEOUT = httpx.Timeout(30.0, read=60.0)


def _create(live: LiveStack) -> str:
    answer = httpx.post(f"{live.api_url}/v1/jobs", json=GOOD, headers=AUTH, timeout=10)
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def _last_id(live: LiveStack, producer: str = ME) -> str:
    found = changes.entries(live.redis, producer)
    return found[-1]["event_id"] if found else changes.BEGINNING


async def _follow(
    live: LiveStack, path: str, headers: dict[str, str] | None = None, deadline_s: float = 90
) -> AsyncIterator[dict[str, Any]]:
    """The stream's ``state`` messages (data plus ``event_id``), until the server closes it."""
    async with (
        httpx.AsyncClient(base_url=live.api_url, timeout=TIMEOUT) as http,
        aconnect_sse(http, "GET", path, headers={**AUTH, **(headers or {})}) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(deadline_s), contextlib.aclosing(source.aiter_sse()) as events:
            async for sse in events:
                assert sse.event == "state"
                yield {**json.loads(sse.data), "event_id": sse.id}


async def _collect(live: LiveStack, path: str, headers: dict[str, str] | None = None) -> list[Any]:
    return [event async for event in _follow(live, path, headers)]


def _contiguous_tail(states: list[str]) -> bool:
    """Whether ``states`` is PATH from some state on, to its end, nothing skipped or repeated."""
    return bool(states) and states == PATH[PATH.index(states[0]) :]


def _ordered(events: list[dict[str, Any]]) -> bool:
    ids = [changes.entry_key(e["event_id"]) for e in events]
    return ids == sorted(ids) and len(set(ids)) == len(ids)


def test_one_job_is_followed_from_its_state_to_succeeded_and_the_stream_closes(
    idle_stack: LiveStack,
) -> None:
    live = idle_stack
    # Given a new job
    job_id = _create(live)
    # When its events are streamed (no Last-Event-ID)
    events = asyncio.run(_collect(live, f"/v1/jobs/{job_id}/events?stream=true"))
    # Then the first is its state then, each change follows in order, the last is succeeded,
    # and the server closed the stream there
    states = [e["state"] for e in events]
    print(f"states seen: {states}")
    assert _contiguous_tail(states), states
    assert _ordered(events[1:])
    assert {e["id"] for e in events} == {job_id}
    assert {(e["provider"], e["model"]) for e in events} == {("zhipu", "cogvideox-flash")}
    assert all(isinstance(e["at"], float) for e in events)
    record = live.client.get(job_id)
    assert record is not None and record.state == "succeeded"


def test_resume_with_last_event_id_replays_only_what_came_after(idle_stack: LiveStack) -> None:
    live = idle_stack
    # Given the stream's position before a job is created, and the job
    before = _last_id(live)
    job_id = _create(live)
    # When its stream is resumed from there: every state, in order, from queued
    resumed = asyncio.run(
        _collect(live, f"/v1/jobs/{job_id}/events?stream=true", {"last-event-id": before})
    )
    assert [e["state"] for e in resumed] == PATH
    assert _ordered(resumed)
    # And resumed again after its 'running' (the job has ended meanwhile): only what came after
    running = next(e["event_id"] for e in resumed if e["state"] == "running")
    again = asyncio.run(
        _collect(live, f"/v1/jobs/{job_id}/events?stream=true&last_event_id={running}")
    )
    assert [e["state"] for e in again] == ["mirroring", "succeeded"]
    assert [e["event_id"] for e in again] == [e["event_id"] for e in resumed[-2:]]

    # And the producer-wide stream resumed from the same place replays the same entries
    async def wide() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        wide = _follow(live, "/v1/events/stream", {"last-event-id": running})
        async with contextlib.aclosing(wide) as events:
            async for event in events:
                if event["id"] == job_id:
                    out.append(event)
                if event["id"] == job_id and event["state"] == "succeeded":
                    break
        return out

    assert [e["event_id"] for e in asyncio.run(wide())] == [e["event_id"] for e in again]


def test_the_producer_stream_shows_only_the_tokens_own_jobs(idle_stack: LiveStack) -> None:
    live = idle_stack
    other = "someone-else"

    async def scenario() -> tuple[list[dict[str, Any]], str, str, str]:
        seen: list[dict[str, Any]] = []
        ready = asyncio.Event()
        stop: set[str] = set()  # the reader returns once it has seen one of these jobs

        async def reader() -> None:
            async with (
                httpx.AsyncClient(base_url=live.api_url, timeout=TIMEOUT) as http,
                aconnect_sse(http, "GET", "/v1/events/stream", headers=AUTH) as source,
                contextlib.aclosing(source.aiter_sse()) as events,
            ):
                assert source.response.status_code == 200
                ready.set()
                async for sse in events:
                    seen.append({**json.loads(sse.data), "event_id": sse.id})
                    if stop & {e["id"] for e in seen}:
                        return

        task = asyncio.create_task(reader())
        await asyncio.wait_for(ready.wait(), 10)
        # Given a job of this token's and one of another producer, both run to their end
        mine = await asyncio.to_thread(_create, live)
        theirs = (await asyncio.to_thread(live.client.enqueue, GOOD, producer=other)).id
        await asyncio.to_thread(live.wait_all, [mine, theirs])
        # And then one more of ours: once it shows, the stream has covered the other's life
        last = await asyncio.to_thread(_create, live)
        stop.add(last)
        await asyncio.wait_for(task, 60)
        return seen, mine, theirs, last

    seen, mine, theirs, last = asyncio.run(scenario())
    # Then our jobs' changes came, in order, and none of the other producer's
    assert [e["state"] for e in seen if e["id"] == mine] == PATH
    assert _ordered(seen)
    assert theirs not in {e["id"] for e in seen}
    assert {e["id"] for e in seen} <= {mine, last}
    # (the other producer's changes were written, to its own stream)
    assert [c["state"] for c in changes.entries(live.redis, other) if c["id"] == theirs] == PATH


def test_errors_come_before_any_stream(live: LiveStack) -> None:
    base = live.api_url
    # An unknown id: the API's usual 404 JSON
    unknown = httpx.get(f"{base}/v1/jobs/no-such-job/events?stream=true", headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    # Another producer's job: the same 404
    theirs = live.client.enqueue(GOOD, producer="someone-else")
    hidden = httpx.get(f"{base}/v1/jobs/{theirs.id}/events?stream=true", headers=AUTH)
    assert hidden.status_code == 404
    # A bad Last-Event-ID: a 400 naming it
    job_id = _create(live)
    bad = httpx.get(
        f"{base}/v1/jobs/{job_id}/events?stream=true",
        headers={**AUTH, "last-event-id": "yesterday"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "last_event_id"
    # No token: 401, on both routes
    assert httpx.get(f"{base}/v1/jobs/{job_id}/events?stream=true").status_code == 401
    assert httpx.get(f"{base}/v1/events/stream").status_code == 401
    # Without stream=true the route is the JSON timeline, as before
    timeline = httpx.get(f"{base}/v1/jobs/{job_id}/events", headers=AUTH)
    assert timeline.status_code == 200
    assert timeline.json()["id"] == job_id
    live.wait_all([job_id, theirs.id])


def test_async_client_stream_follows_a_job_to_its_end(idle_stack: LiveStack) -> None:
    live = idle_stack

    async def scenario() -> tuple[list[dict[str, Any]], str]:
        async with AsyncClient(live.api_url, token=API_TOKEN) as vq:
            job = await vq.enqueue(GOOD)
            async with asyncio.timeout(90):
                return [event async for event in vq.stream(job.id)], job.id

    events, job_id = asyncio.run(scenario())
    states = [e["state"] for e in events]
    assert _contiguous_tail(states), states
    assert all(e["id"] == job_id and e["event_id"] for e in events)


def test_async_client_stream_of_an_unknown_job_raises_job_not_found(live: LiveStack) -> None:
    async def scenario() -> None:
        async with AsyncClient(live.api_url, token=API_TOKEN) as vq:
            async for _ in vq.stream("no-such-job"):
                pass

    with pytest.raises(JobNotFound):
        asyncio.run(scenario())


class _DropOnce(httpx.AsyncBaseTransport):
    """A transport that cuts the first streamed response after its first event (a dropped
    connection), and records each request's Last-Event-ID."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.resumed_from: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.resumed_from.append(request.headers.get("last-event-id"))
        response = await self.inner.handle_async_request(request)
        if len(self.resumed_from) > 1:
            return response
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response.stream),  # type: ignore[arg-type]
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CutStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk
            if b"event: state" in chunk:
                raise httpx.ReadError("connection dropped (test)")

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_async_client_stream_resumes_after_a_dropped_connection(idle_stack: LiveStack) -> None:
    live = idle_stack
    transport = _DropOnce()

    async def scenario() -> tuple[list[dict[str, Any]], str]:
        async with AsyncClient(live.api_url, token=API_TOKEN, transport=transport) as vq:
            job = await vq.enqueue(GOOD)
            transport.resumed_from.clear()
            async with asyncio.timeout(90):
                return [event async for event in vq.stream(job.id)], job.id

    events, job_id = asyncio.run(scenario())
    # Then it connected again, after the event it had, and missed or repeated nothing
    assert len(transport.resumed_from) >= 2
    assert transport.resumed_from[0] is None
    assert transport.resumed_from[1] == events[0]["event_id"]
    assert {e["id"] for e in events} == {job_id}
    states = [e["state"] for e in events]
    print(f"states across the reconnect: {states}")
    assert _contiguous_tail(states), states
    assert events[-1]["state"] in TERMINAL


def _blocked_readers(live: LiveStack) -> int:
    return sum(
        1 for c in live.redis.client_list() if c.get("cmd") == "xread" and "b" in c.get("flags", "")
    )


def test_a_client_that_goes_releases_its_redis_connection(live: LiveStack) -> None:
    baseline = _blocked_readers(live)

    async def scenario() -> int:
        async with (
            httpx.AsyncClient(base_url=live.api_url, timeout=TIMEOUT) as http,
            aconnect_sse(http, "GET", "/v1/events/stream", headers=AUTH) as source,
        ):
            assert source.response.status_code == 200
            for _ in range(100):
                if _blocked_readers(live) > baseline:
                    break
                await asyncio.sleep(0.05)
            return _blocked_readers(live)

    # Given an open stream, waiting in Redis (a blocked XREAD)
    during = asyncio.run(scenario())
    assert during == baseline + 1
    # When the client has gone: the blocked read is gone too, within a few seconds
    deadline = time.monotonic() + 15
    while _blocked_readers(live) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _blocked_readers(live) == baseline


def test_one_job_costs_one_xadd_per_state_change(idle_stack: LiveStack) -> None:
    live = idle_stack

    def calls() -> dict[str, int]:
        stats: dict[str, Any] = live.redis.info("commandstats")  # type: ignore[assignment]
        return {name: int(v["calls"]) for name, v in stats.items()}

    # Given the idle stack's command counts, when one job runs to its end
    before = calls()
    job_id = _create(live)
    [record] = live.wait_all([job_id])
    time.sleep(0.5)
    after = calls()
    # Then the XADDs are its five states, one each (XADD is only ever the change streams')
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    xadds = delta.get("cmdstat_xadd", 0)
    total = sum(v for name, v in delta.items() if name != "cmdstat_info")
    print(f"one job on the live stack: {total} Redis commands (beat and pollers included), "
          f"{xadds} XADD, {total - xadds} without them")  # fmt: skip
    assert record.state == "succeeded"
    assert xadds == len(PATH)


@pytest.mark.parametrize("route", ["/v1/events/stream", "/v1/jobs/{id}/events"])
def test_the_routes_are_documented_as_event_streams(live: LiveStack, route: str) -> None:
    spec = httpx.get(f"{live.api_url}/openapi.json").json()
    operation = spec["paths"][route.replace("{id}", "{job_id}")]["get"]
    assert "jobs" in operation["tags"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


def test_the_wire_format_and_the_ping(idle_stack: LiveStack) -> None:
    live = idle_stack

    async def scenario() -> tuple[bytes, float]:
        async with (
            httpx.AsyncClient(base_url=live.api_url, timeout=TIMEOUT) as http,
            http.stream("GET", "/v1/events/stream", headers=AUTH) as response,
        ):
            started = time.monotonic()
            raw = b""
            job_id = await asyncio.to_thread(_create, live)
            async with asyncio.timeout(30):
                async for chunk in response.aiter_raw():
                    raw += chunk
                    if b": ping\n\n" in raw and job_id.encode() in raw:
                        return raw, time.monotonic() - started
        raise AssertionError("the stream ended")

    raw, waited = asyncio.run(scenario())
    print(f"first ping after {waited:.1f} s")
    # A message: id, event and data lines ended by LF, a blank line after it
    first = raw.split(b"\n\n")[0].decode().split("\n")
    assert [line.split(":", 1)[0] for line in first] == ["id", "event", "data"]
    assert first[1] == "event: state"
    data = json.loads(first[2].removeprefix("data: "))
    assert set(data) == {"id", "state", "at", "provider", "model"}
    assert b"\r" not in raw


def test_the_producer_stream_filters_by_job(idle_stack: LiveStack) -> None:
    live = idle_stack
    position = _last_id(live)
    wanted, other = _create(live), _create(live)

    async def scenario() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        path = f"/v1/events/stream?job={wanted}&job=no-such-job"
        async with contextlib.aclosing(_follow(live, path, {"last-event-id": position})) as events:
            async for event in events:
                out.append(event)
                if event["state"] == "succeeded":
                    break
        return out

    events = asyncio.run(scenario())
    assert [e["state"] for e in events] == PATH
    assert {e["id"] for e in events} == {wanted}
    live.wait_all([other])
    too_many = "&".join(f"job=j{i}" for i in range(101))
    refused = httpx.get(f"{live.api_url}/v1/events/stream?{too_many}", headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "job"
