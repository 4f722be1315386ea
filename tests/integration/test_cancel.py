"""Cancelling jobs on the real stack: queued, running at a provider without a cancel call."""

from __future__ import annotations

import time

import pytest

from tests.support.live import LiveStack
from workers.domain.errors import CancelRefused
from workers.domain.jobs import State
from workers.redis import keys

SOLO = {"provider": "solo", "model": "cogvideox-flash", "prompt": "a slow river"}


def _wait_state(live: LiveStack, job_id: str, state: State, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (record := live.client.get(job_id)) is None or record.state != state:
        assert time.monotonic() < deadline, f"{job_id} never reached {state}"
        time.sleep(0.05)


def test_a_queued_job_is_cancelled_without_ever_reaching_the_provider(
    idle_stack: LiveStack,
) -> None:
    # Given a provider with one slot, taken by a running job, and a second job waiting
    live = idle_stack
    live.set_sim(gen_time_s=2.0, gen_jitter_s=0)
    first = live.client.enqueue(SOLO)
    _wait_state(live, first.id, State.RUNNING)
    waiting = live.client.enqueue(SOLO)
    # When the waiting job is cancelled
    cancelled = live.client.cancel(waiting.id)
    # Then it is cancelled at once, out of the waiting set, and never submitted
    assert cancelled.state == State.CANCELLED
    assert cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    assert live.redis.zscore(keys.waiting("solo"), waiting.id) is None
    live.wait_all([first.id])
    assert waiting.id not in live.sim_stats()["request_ids"]


def test_a_running_job_keeps_its_slot_until_the_provider_finishes(idle_stack: LiveStack) -> None:
    # Given a running job at a provider with no cancel call (Zhipu), cap 1, and one waiting
    live = idle_stack
    live.set_sim(gen_time_s=2.5, gen_jitter_s=0)
    running = live.client.enqueue(SOLO)
    _wait_state(live, running.id, State.RUNNING)
    waiting = live.client.enqueue(SOLO)
    # When the running job is cancelled
    assert live.client.cancel(running.id).state == State.CANCELLED
    # Then the provider still counts it, so the waiting job is not submitted yet
    time.sleep(0.8)
    assert live.client.deps.gate.holders("solo", "SIM_SOLO_KEY") == [running.id]
    assert live.client.get(waiting.id).state == State.QUEUED  # type: ignore[union-attr]
    # And once the provider finishes, the slot passes on, and nothing was mirrored
    [after] = live.wait_all([waiting.id], timeout_s=30)
    assert after.state == State.SUCCEEDED
    final = live.client.get(running.id)
    assert final is not None
    assert final.state == State.CANCELLED
    assert final.result is None
    assert final.provider_finished_at is not None
    assert live.sim_stats()["max_in_flight_by_key"]["sim-key-solo-test"] == 1


def test_a_finished_job_cannot_be_cancelled(idle_stack: LiveStack) -> None:
    live = idle_stack
    live.set_sim(gen_time_s=0.2)
    [done] = live.wait_all([live.client.enqueue(SOLO).id])
    with pytest.raises(CancelRefused):
        live.client.cancel(done.id)
    with pytest.raises(KeyError):
        live.client.cancel("no-such-job")


def test_a_provider_that_can_cancel_frees_the_slot_at_once(idle_stack: LiveStack) -> None:
    # Given three Ark jobs filling a cap of 3 (5 s generations, queued at Ark for the first
    # second) and a fourth waiting
    live = idle_stack
    live.set_sim(gen_time_s=5.0, gen_jitter_s=0)
    ark = {"provider": "ark", "model": "doubao-seedance-1-0-pro-250528", "prompt": "a kite"}
    ids = [live.client.enqueue(ark).id for _ in range(4)]
    _wait_state(live, ids[0], State.RUNNING)
    # When the first is cancelled while Ark still has it queued
    cancelled_at = time.time()
    assert live.client.cancel(ids[0]).state == State.CANCELLED
    # Then Ark drops it, its slot goes to the waiting job long before 5 s have passed
    _wait_state(live, ids[3], State.RUNNING, timeout_s=4)
    assert time.time() - cancelled_at < 3
    first = live.client.get(ids[0])
    assert first is not None
    assert first.provider_finished_at is not None
    assert any(e["event"] == "cancelled at the provider" for e in live.client.events(ids[0]))
    live.wait_all(ids[1:], timeout_s=30)
