"""The periodic sweep against a real Redis: reclaiming leases, dispatching free slots.

Time is moved by writing the due and lease scores into the past (by Redis TIME), so each test
says exactly how late a job is, and nothing waits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis

from config.settings import Settings
from tests.support.sweeping import (
    GRACE_S,
    KEY,
    LEASE_S,
    catalogue,
    in_state,
    lease,
    redis_now_ms,
    spec,
)
from workers.deps import Deps
from workers.domain.change import Change
from workers.domain.jobs import State
from workers.domain.messages import Step
from workers.redis import keys
from workers.redis.gate import Gate
from workers.redis.store import Store
from workers.steps.due import publish_due
from workers.steps.sweep import reclaim_leases, sweep


@pytest.fixture
def deps(redis_db: redis.Redis) -> Deps:
    return Deps(
        settings=Settings(),
        catalogue=catalogue(),
        redis=redis_db,
        store=Store(redis_db, grace_s=GRACE_S),
        gate=Gate(redis_db, lease_s=LEASE_S),
    )


def overdue(d: Deps, job_id: str) -> None:
    """The job's next step was due a minute ago (its message was lost)."""
    d.redis.zadd(keys.due(), {job_id: redis_now_ms(d.redis) - 60_000})


def lease_expired(d: Deps, job_id: str) -> None:
    d.redis.zadd(keys.gate("sim", KEY), {job_id: redis_now_ms(d.redis) - 1000})


# -- leases --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.SUBMITTING, State.RUNNING, State.SUBMIT_UNKNOWN], ids=str)
def test_an_expired_lease_of_a_job_still_at_the_provider_is_renewed(
    deps: Deps, state: State
) -> None:
    # Given a job the provider may still be working on, before its deadline, lease expired
    in_state(deps, "job-1", state)
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases
    earliest = redis_now_ms(deps.redis)
    released = reclaim_leases(deps)
    # Then the job keeps its slot, for a full lease time
    assert released == 0
    score = lease(deps, "job-1")
    assert score is not None
    assert score >= earliest + LEASE_S * 1000


def test_a_cancelled_job_the_provider_still_works_on_keeps_its_slot(deps: Deps) -> None:
    # Given a job cancelled while running at a provider that has no cancel call
    in_state(deps, "job-1", State.RUNNING)
    cancelled = Change(at_provider=True)
    deps.store.transition("job-1", [State.RUNNING], State.CANCELLED, change=cancelled)
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases, Then the provider still counts it: the slot stays
    assert reclaim_leases(deps) == 0
    assert lease(deps, "job-1") is not None


@pytest.mark.parametrize(
    "state",
    [State.QUEUED, State.MIRRORING, State.SUCCEEDED, State.FAILED, State.CANCELLED],
    ids=str,
)
def test_an_expired_lease_of_a_job_not_at_the_provider_is_released(
    deps: Deps, state: State
) -> None:
    # Given a job the provider is not working on, whose lease expired
    in_state(deps, "job-1", state)
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases
    released = reclaim_leases(deps)
    # Then the slot is given back
    assert released == 1
    assert lease(deps, "job-1") is None


def test_an_expired_lease_of_a_gone_job_is_released(deps: Deps) -> None:
    in_state(deps, "job-1", State.RUNNING)
    lease_expired(deps, "job-1")
    deps.redis.delete(keys.job("job-1"))
    assert reclaim_leases(deps) == 1
    assert lease(deps, "job-1") is None


def test_an_expired_lease_of_a_running_job_past_its_deadline_is_released(deps: Deps) -> None:
    # Given a running job whose provider deadline passed, and whose lease expired
    in_state(deps, "job-1", State.RUNNING, deadline_in_s=-1)
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases
    released = reclaim_leases(deps)
    # Then the slot is given back
    assert released == 1
    assert lease(deps, "job-1") is None


def test_an_expired_lease_held_under_another_key_than_the_jobs_is_released(deps: Deps) -> None:
    # Given a running job whose record says it holds another key than this lease's
    in_state(deps, "job-1", State.RUNNING)
    deps.store.transition("job-1", [State.RUNNING], None, change=Change(key_id="OTHER_KEY"))
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases, then the stray lease is released
    assert reclaim_leases(deps) == 1
    assert lease(deps, "job-1") is None


def test_a_lease_not_yet_expired_is_left_alone(deps: Deps) -> None:
    in_state(deps, "job-1", State.SUCCEEDED)
    before = lease(deps, "job-1")
    assert reclaim_leases(deps) == 0
    assert lease(deps, "job-1") == before


# -- dispatch ------------------------------------------------------------------------------


def test_sweep_ends_by_dispatching_free_slots(deps: Deps) -> None:
    # Given a provider with 3 slots, one held by a finished job whose lease expired,
    # one by a running job, and 5 jobs waiting (their dispatch was lost)
    in_state(deps, "done", State.SUCCEEDED)
    in_state(deps, "running", State.RUNNING)
    lease_expired(deps, "done")
    for n in range(5):
        deps.store.create(f"wait-{n}", spec())
    # When the sweep runs
    steps = sweep(deps)
    # Then the two free slots (one freed by the sweep itself) get the first waiting jobs
    assert steps == [Step("submit", "wait-0"), Step("submit", "wait-1")]
    holders = set(deps.gate.holders("sim", KEY))
    assert holders == {"running", "wait-0", "wait-1"}
    assert deps.gate.waiting("sim") == 3


def test_a_slot_freed_from_a_submit_unknown_job_goes_to_the_next_waiting_job(deps: Deps) -> None:
    # Given a provider with one slot, held by a submit_unknown job past its step, and a job
    # waiting behind it
    deps = dataclasses.replace(deps, catalogue=catalogue(max_in_flight=1))
    in_state(deps, "parked", State.SUBMIT_UNKNOWN)
    overdue(deps, "parked")
    deps.store.create("next", spec())
    # When a due poller gives the parked job's slot back and the sweep runs, then the waiting
    # job gets the slot
    assert publish_due(deps, object()) == 1
    assert sweep(deps) == [Step("submit", "next")]
    assert deps.gate.holders("sim", KEY) == ["next"]


def test_a_submit_unknown_job_past_its_hold_gives_its_slot_back_and_is_counted(
    deps: Deps,
) -> None:
    # Given a submit_unknown job whose hold ran out, its lease with it
    in_state(deps, "parked", State.SUBMIT_UNKNOWN)
    past = redis_now_ms(deps.redis) - 1
    deps.store.transition("parked", [State.SUBMIT_UNKNOWN], None, change=Change(hold_until_ms=past))
    lease_expired(deps, "parked")
    # When the sweep reclaims leases, Then the slot is released and counted; the job stays
    assert reclaim_leases(deps) == 1
    assert lease(deps, "parked") is None
    assert deps.gate.unknown_released("sim") == 1
    fields = deps.store.fields("parked")
    assert fields["state"] == State.SUBMIT_UNKNOWN and "at_provider" not in fields
    assert "slot_released_at" in fields


@pytest.mark.parametrize("state", [State.RUNNING, State.CANCELLED], ids=str)
def test_a_hold_binds_only_a_job_still_submit_unknown(deps: Deps, state: State) -> None:
    # Given a job with a hold that ran out, which is no longer submit_unknown: running (its
    # task showed up) or cancelled while the provider may still generate it
    in_state(deps, "job-1", State.RUNNING)
    past = Change(hold_until_ms=redis_now_ms(deps.redis) - 1, at_provider=True)
    if state != State.RUNNING:
        deps.store.transition("job-1", [State.RUNNING], state)
    deps.store.transition("job-1", [state], None, change=past)
    lease_expired(deps, "job-1")
    # When the sweep reclaims leases, Then it keeps its slot until its deadline, uncounted
    assert reclaim_leases(deps) == 0
    assert lease(deps, "job-1") is not None
    assert deps.gate.unknown_released("sim") == 0


# -- races with a live step ----------------------------------------------------------------


def test_a_lease_renewed_while_the_sweep_decides_is_not_released(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dispatched job whose lease expired, and whose submit renews it (as submit does
    # right after its claim) just after the sweep listed the expired leases
    in_state(deps, "job-1", State.QUEUED)
    lease_expired(deps, "job-1")
    listed = deps.gate.expired

    def expired_then_renewed(provider: str, key_id: str) -> list[str]:
        ids = listed(provider, key_id)
        assert deps.gate.renew(provider, key_id, "job-1")
        return ids

    monkeypatch.setattr(deps.gate, "expired", expired_then_renewed)
    # When the sweep reclaims leases
    reclaim_leases(deps)
    # Then the freshly renewed lease is still held
    assert lease(deps, "job-1") is not None


def test_a_step_claimed_while_a_poller_takes_it_cannot_be_claimed_by_the_copy(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dispatched job whose late submit claims its step just after a due poller took it
    in_state(deps, "job-1", State.QUEUED)
    overdue(deps, "job-1")
    taken = deps.store.take_due

    def taken_then_claimed(limit: int = 500) -> Any:
        jobs = taken(limit)
        assert deps.store.claim("job-1", [State.QUEUED, State.SUBMITTING], lease_s=65).ok
        return jobs

    monkeypatch.setattr(deps.store, "take_due", taken_then_claimed)
    # When the poller publishes what it took (a copy of the submit)
    publish_due(deps, _NoSend())
    # Then the copy cannot claim the step the first submit holds
    assert not deps.store.claim("job-1", [State.QUEUED, State.SUBMITTING], lease_s=65).ok


class _NoSend:
    def producer_or_acquire(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def send_task(self, *_: Any, **__: Any) -> None:
        pass
