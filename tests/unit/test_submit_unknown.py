"""A submit whose outcome is unknown (``submit_unknown``) holds its slot only as long as the
provider could still be generating the task: the model's learned p99 generation time × 1.5 +
60 s, at most the provider's deadline (the deadline while fewer than 8 durations are known).
Then the sweep releases the slot, counts it, and the job stays submit_unknown with its cost
risk written down. Real Redis (the unit tier's), a fake Zhipu that refuses the repeat.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from tests.support.sweeping import redis_now_ms
from tests.unit.test_scripts import only_alt_keys, use_alt_layout
from workers import observe
from workers.deps import Deps
from workers.domain.jobs import JobSpec, State
from workers.domain.messages import Step
from workers.providers.base import ProviderTask
from workers.redis import keys
from workers.redis.gate import Gate
from workers.redis.store import Store
from workers.steps import endings, submit
from workers.steps.sweep import reclaim_leases, sweep

MODEL = "cogvideox-flash"
TIMEOUT_S = 600


class DuplicateZhipu(FakeZhipu):
    """Refuses every submit as a repeated request id without naming the task (Zhipu 1231)."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json={"error": {"code": "1231", "message": "repeat"}})
        return super().__call__(request)


@pytest.fixture
def d(redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deps]:
    monkeypatch.setenv("KEY_A", "secret-a")
    cat = catalogue(max_in_flight=1, timeout_s=TIMEOUT_S)
    deps = fake_deps(redis_db, cat, DuplicateZhipu())
    yield deps
    deps.stats.flush()  # the request counts, while this test's Redis is still there


def learned(d: Deps, seconds: float, n: int = 8) -> None:
    for _ in range(n):
        d.stats.record_duration("sim", MODEL, seconds)


def parked(d: Deps, job_id: str = "j1") -> Any:
    """The job dispatched into the only slot, its submit refused as a repeat: parked."""
    job(d.store, job_id, producer="A")
    assert endings.dispatch("sim", d) == [Step("submit", job_id)]
    assert submit.submit(job_id, d) == []
    row = d.store.row(job_id)
    assert row is not None and row.state == State.SUBMIT_UNKNOWN
    return row


def lease(d: Deps, job_id: str) -> float | None:
    return d.redis.zscore(keys.gate("sim", "KEY_A"), job_id)


# -- the hold rule ---------------------------------------------------------------------------


def test_the_hold_is_the_learned_p99_with_a_margin_capped_by_the_deadline() -> None:
    config = catalogue(timeout_s=TIMEOUT_S).get("sim")
    # Fewer than 8 durations: the provider's deadline
    assert submit.unknown_hold_s(config, [10.0] * 7) == TIMEOUT_S
    # Eight or more: p99 × 1.5 + 60 s (here the p99 of 1..100 s is 100 s)
    assert submit.unknown_hold_s(config, [float(s) for s in range(1, 101)]) == 210.0
    # Never past the deadline
    assert submit.unknown_hold_s(config, [500.0] * 10) == TIMEOUT_S


def test_a_parked_job_records_its_hold_and_its_lease_runs_out_with_it(d: Deps) -> None:
    # Given a model whose generations take 40 s
    learned(d, 40.0)
    before = redis_now_ms(d.redis)
    # When a job's submit is refused as a repeat (the outcome is unknown)
    row = parked(d)
    # Then it holds its slot for 40 × 1.5 + 60 = 120 s: in the record and in the lease
    assert row.hold_until_ms - row.hold_since_ms == 120_000
    assert row.deadline_ms - row.hold_since_ms == TIMEOUT_S * 1000
    assert row.at_provider and row.slot_released_at is None
    score = lease(d, "j1")
    assert score is not None and before + 119_000 <= score <= redis_now_ms(d.redis) + 120_000


# -- the sweep ---------------------------------------------------------------------------------


def test_past_its_hold_the_slot_goes_to_the_next_job_and_the_job_stays_unknown(
    d: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a short hold (a model that takes 40 ms, no margin), a job parked in the only slot
    # and a job waiting behind it
    monkeypatch.setattr(submit, "UNKNOWN_HOLD_MARGIN_S", 0.0)
    learned(d, 0.04)
    parked(d)
    job(d.store, "next", producer="A")
    assert endings.dispatch("sim", d) == []
    # When the hold (60 ms) has run out and the sweep runs
    time.sleep(0.15)
    steps = sweep(d)
    # Then the slot is free and handed to the waiting job
    assert steps == [Step("submit", "next")]
    assert d.gate.holders("sim", "KEY_A") == ["next"]
    # And the parked job stays submit_unknown, no longer counted, its cost risk written down
    row = d.store.row("j1")
    assert row is not None and row.state == State.SUBMIT_UNKNOWN
    assert not row.at_provider and row.slot_released_at
    assert row.error is not None and row.error.code == "submit_unknown"
    last = d.store.events("j1")[-1]["event"]
    assert last.startswith("slot released after ")
    assert last.endswith("; the provider may still bill this job")
    assert d.redis.zscore(keys.due(), "j1") is None
    # And the release is counted, for /metrics
    assert d.gate.unknown_released("sim") == 1
    text = observe.prometheus(observe.snapshot(d))
    assert 'vidqueue_submit_unknown_released_total{provider="sim"} 1' in text
    # And a second sweep finds nothing more to do
    assert reclaim_leases(d) == 0
    assert d.gate.unknown_released("sim") == 1


def test_without_known_durations_the_slot_is_held_until_the_deadline(d: Deps) -> None:
    # Given a model with only 7 known durations, a job parked in the only slot, one waiting
    learned(d, 0.04, n=7)
    row = parked(d)
    job(d.store, "next", producer="A")
    assert row.hold_until_ms == row.deadline_ms
    # When its lease runs out long before the deadline and the sweep runs
    d.redis.zadd(keys.gate("sim", "KEY_A"), {"j1": redis_now_ms(d.redis) - 1000})
    assert sweep(d) == []
    # Then the job keeps its slot (renewed, never past its hold), and nothing is counted
    score = lease(d, "j1")
    assert score is not None and score <= row.hold_until_ms
    assert d.gate.holders("sim", "KEY_A") == ["j1"]
    assert d.gate.unknown_released("sim") == 0
    # When the deadline has passed, Then the slot goes to the waiting job
    d.redis.hset(keys.job("j1"), "hold_until_ms", redis_now_ms(d.redis) - 1)
    d.redis.zadd(keys.gate("sim", "KEY_A"), {"j1": redis_now_ms(d.redis) - 1})
    assert sweep(d) == [Step("submit", "next")]
    assert d.gate.unknown_released("sim") == 1
    assert d.store.fields("j1")["state"] == State.SUBMIT_UNKNOWN


def test_a_held_over_release_uses_only_the_keys_layout(
    redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RECLAIM's new branch names no key of its own (``tests.unit.test_scripts``' check)."""
    assert keys.unknown_released("s") == "vq:unknown_released:s"
    use_alt_layout(monkeypatch)
    # Given two dispatched jobs whose leases expired: one running, one submit_unknown whose
    # hold ran out
    cat = catalogue(max_in_flight=2)
    Store(redis_db).create("job-0", JobSpec(provider="sim", model=MODEL, prompt="p"))
    Store(redis_db).create("job-1", JobSpec(provider="sim", model=MODEL, prompt="p"))
    gate = Gate(redis_db, lease_s=0.001)
    assert len(gate.dispatch(cat.get("sim"))) == 2
    redis_db.hset(keys.job("job-0"), "state", "running")
    redis_db.hset(keys.job("job-1"), "state", "submit_unknown", {"hold_until_ms": 1})
    time.sleep(0.01)
    # When they are reclaimed: the running one is renewed, the held-over one released, counted
    assert gate.reclaim("sim", "KEY_A", "job-0", ",running,", "submit_unknown") == 1
    assert gate.reclaim("sim", "KEY_A", "job-1", ",running,", "submit_unknown") == 3
    assert gate.holders("sim", "KEY_A") == ["job-0"] and gate.unknown_released("sim") == 1
    only_alt_keys(redis_db)


def test_a_submit_reconciled_with_the_providers_task_runs_without_a_hold(
    d: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that finds the task by the job id once the submit's outcome is unknown
    learned(d, 0.04)
    found = ProviderTask("t-found", {})
    monkeypatch.setattr(d.provider("sim"), "reconcile", lambda *_: found)
    job(d.store, "j1", producer="A")
    endings.dispatch("sim", d)
    # When the submit is refused as a repeat
    steps = submit.submit("j1", d)
    # Then the job runs with the provider's task, polled, its slot held as any running job's
    row = d.store.row("j1")
    assert row is not None and row.state == State.RUNNING
    assert row.provider_task_id == "t-found" and row.hold_until_ms == 0
    assert [s.task for s in steps] == ["poll"]
    d.redis.zadd(keys.gate("sim", "KEY_A"), {"j1": redis_now_ms(d.redis) - 1000})
    assert reclaim_leases(d) == 0
    assert d.gate.holders("sim", "KEY_A") == ["j1"]
