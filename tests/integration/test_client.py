"""The Python clients: ``producer.client.Client`` (Redis, sync) and ``producer.aio.AsyncClient``
(HTTP, asyncio) — the same operations, the same errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from producer.aio import AsyncClient
from producer.client import CancelRefused, Client, IdempotencyConflict
from tests.support.live import API_TOKEN, LiveStack
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import State

FLASH = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a red kite"}


@pytest.fixture
def client(idle_stack: LiveStack) -> Client:
    """A client with its own producer identity, so its listings hold only its jobs."""
    live = idle_stack
    return Client(live.settings, live.client.catalogue, producer=f"test-{uuid.uuid4().hex[:8]}")


def test_enqueue_many_wait_many_and_list(client: Client) -> None:
    specs = [{**FLASH, "labels": {"n": str(i)}} for i in range(4)]
    jobs = client.enqueue_many(specs)
    assert [j.spec["labels"]["n"] for j in jobs] == ["0", "1", "2", "3"]
    seen: list[str] = []
    done = client.wait_many(
        [j.id for j in jobs], timeout_s=60, on_change=lambda r: seen.append(r.id)
    )
    assert [d.id for d in done] == [j.id for j in jobs]
    assert all(d.state == State.SUCCEEDED and d.result for d in done)
    assert set(seen) == {j.id for j in jobs}
    assert "X-Amz-Signature=" in done[0].result["video"]["url"]  # type: ignore[index]
    # list: newest first, filtered, paged
    page = client.list(limit=3)
    assert [j.id for j in page.jobs] == [j.id for j in jobs][::-1][:3]
    assert page.next_cursor is not None
    rest = client.list(limit=3, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == [jobs[0].id] and rest.next_cursor is None
    assert [j.id for j in client.list(labels={"n": "2"}).jobs] == [jobs[2].id]
    assert client.list(state=State.FAILED).jobs == []


def test_errors_name_what_is_wrong(client: Client) -> None:
    with pytest.raises(InvalidSpec) as bad:
        client.enqueue_many([FLASH, {**FLASH, "fps": 60}])
    assert bad.value.field == "jobs.1.fps"
    key = uuid.uuid4().hex
    first = client.enqueue({**FLASH, "idempotency_key": key})
    assert client.enqueue({**FLASH, "idempotency_key": key}).id == first.id
    with pytest.raises(IdempotencyConflict):
        client.enqueue({**FLASH, "prompt": "other", "idempotency_key": key})
    with pytest.raises(KeyError):
        client.cancel("no-such-job")
    assert client.get("no-such-job") is None
    client.wait(first.id, timeout_s=60)
    with pytest.raises(CancelRefused):
        client.cancel(first.id)
    with pytest.raises(TimeoutError):
        client.wait(client.enqueue(FLASH).id, timeout_s=0)


def test_the_asyncio_client_does_the_same_over_http(idle_stack: LiveStack) -> None:
    live = idle_stack

    async def scenario() -> None:
        async with AsyncClient(live.api_url, API_TOKEN) as vq:
            one = await vq.enqueue(FLASH, idempotency_key=f"aio-{uuid.uuid4().hex}")
            many = await vq.enqueue_many([{**FLASH, "labels": {"aio": "yes"}}] * 2)
            done = await vq.wait_many([one.id, *(m.id for m in many)], timeout_s=60, interval_s=0.2)
            assert [d.state for d in done] == [State.SUCCEEDED] * 3
            assert (await vq.wait(one.id, timeout_s=5)).id == one.id
            got = await vq.get(one.id)
            assert got is not None and got.result is not None
            assert await vq.get("no-such-job") is None
            page = await vq.list(labels={"aio": "yes"}, limit=1)
            assert page.jobs[0].id == many[1].id and page.next_cursor is not None
            events = await vq.events(one.id)
            assert events[0]["event"] == "created"
            uploaded = await vq.upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
            assert uploaded.image.startswith("upload:") and uploaded.image.endswith(".png")
            with pytest.raises(InvalidSpec) as bad:
                await vq.enqueue({**FLASH, "quality": "quality"})
            assert bad.value.field == "quality"
            with pytest.raises(CancelRefused):
                await vq.cancel(one.id)
            with pytest.raises(KeyError):
                await vq.cancel("no-such-job")
            # solo has one slot: with it taken, the second job waits, and is cancelled at once
            blocker = await vq.enqueue({**FLASH, "provider": "solo"})
            queued = await vq.enqueue({**FLASH, "provider": "solo"})
            cancelled = await vq.cancel(queued.id)
            assert cancelled.state == State.CANCELLED and cancelled.error is not None
            assert (await vq.wait(blocker.id, timeout_s=30)).terminal

    asyncio.run(scenario())
