"""``AsyncClient.stream`` against a scripted transport (one module, so a fake server): a
502/503/504 is waited out and the stream opened again with ``Last-Event-ID``; a 404 is raised."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from producer import aio
from producer.aio import AsyncClient
from workers.domain.errors import JobNotFound


def _sse(entry_id: str, state: str) -> bytes:
    data = {"id": "j1", "state": state, "at": 1.0, "provider": "zhipu", "model": "m"}
    return f"id: {entry_id}\nevent: state\ndata: {json.dumps(data)}\n\n".encode()


class Script:
    """Answers each request with the next of ``answers``, recording the Last-Event-ID sent."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.resumed_from: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.resumed_from.append(request.headers.get("last-event-id"))
        status, body = self.answers.pop(0)
        kind = "text/event-stream" if status == 200 else "application/json"
        return httpx.Response(status, content=body, headers={"content-type": kind})


async def _follow(script: Script) -> list[str]:
    async with AsyncClient("http://api", "t", transport=httpx.MockTransport(script)) as vq:
        return [event["state"] async for event in vq.stream("j1")]


def test_an_unavailable_api_is_waited_out_and_the_stream_resumed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aio, "RECONNECT_DELAYS_S", (0.01, 0.02))
    busy = b'{"error": {"code": "unavailable", "message": "Redis is down"}}'
    script = Script(
        (200, _sse("1-0", "queued") + _sse("2-0", "running")),  # then the connection ends
        (503, busy),
        (504, busy),
        (200, _sse("3-0", "succeeded")),
    )
    assert asyncio.run(_follow(script)) == ["queued", "running", "succeeded"]
    assert script.resumed_from == [None, "2-0", "2-0", "2-0"]


def test_an_unknown_job_is_raised_not_retried() -> None:
    missing = b'{"error": {"code": "job_not_found", "message": "no job j1", "field": null}}'
    script = Script((404, missing))
    with pytest.raises(JobNotFound):
        asyncio.run(_follow(script))
    assert len(script.resumed_from) == 1
