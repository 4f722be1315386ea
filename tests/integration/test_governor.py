"""The governor against a real Redis: fair share, priority, AIMD caps, the shared rate limit,
key stickiness, and the learned first poll."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
import redis

from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from workers.domain import schedule
from workers.redis.gate import Gate
from workers.redis.limiter import RateLimiter
from workers.redis.store import Store
from workers.steps import endings, poll, submit


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db)


@pytest.fixture
def gate(redis_db: redis.Redis) -> Gate:
    return Gate(redis_db)


def dispatched(gate: Gate, config: Any) -> list[str]:
    return [d.job_id for d in gate.dispatch(config)]


# -- fair share and priority ---------------------------------------------------------------


def test_a_small_producer_is_not_starved_by_a_big_one(store: Store, gate: Gate) -> None:
    # Given producer A with 100 queued jobs holding all 4 slots, then producer B with 5
    config = catalogue().get("sim")
    for i in range(100):
        job(store, f"a{i:03}", producer="A")
    assert dispatched(gate, config) == ["a000", "a001", "a002", "a003"]
    for i in range(5):
        job(store, f"b{i}", producer="B")
    # When A's jobs finish one by one, Then B gets freed slots until both hold 2 (FIFO each)
    taken = []
    for done in ("a000", "a001", "a002", "a003"):
        gate.release("sim", "KEY_A", done)
        taken += dispatched(gate, config)
    assert taken == ["b0", "b1", "a004", "a005"]


def test_producers_arriving_together_share_the_slots(store: Store, gate: Gate) -> None:
    config = catalogue().get("sim")
    for i in range(100):
        job(store, f"a{i:03}", producer="A")
    for i in range(5):
        job(store, f"b{i}", producer="B")
    assert sorted(dispatched(gate, config)) == ["a000", "a001", "b0", "b1"]


def test_fair_share_follows_the_tenant_label_over_the_producer(store: Store, gate: Gate) -> None:
    config = catalogue(max_in_flight=2).get("sim")
    for i in range(10):
        job(store, f"t1-{i}", producer="shared-token", tenant="one")
    job(store, "t2-0", producer="shared-token", tenant="two")
    assert sorted(dispatched(gate, config)) == ["t1-0", "t2-0"]


def test_priority_beats_fair_share(store: Store, gate: Gate) -> None:
    # Given B holds nothing and waits at priority 0, A has an urgent job at priority 9
    config = catalogue(max_in_flight=1).get("sim")
    job(store, "b-low", producer="B")
    job(store, "a-urgent", producer="A", priority=9)
    assert dispatched(gate, config) == ["a-urgent"]


# -- AIMD back-pressure ------------------------------------------------------------------


def test_a_provider_concurrency_limit_shrinks_the_cap_then_it_recovers(
    store: Store, gate: Gate, redis_db: redis.Redis
) -> None:
    # Given a key capped at 10
    config = catalogue(max_in_flight=10).get("sim")
    for i in range(30):
        job(store, f"j{i:02}", producer="A")
    # When the provider says "concurrency too high"
    assert gate.shrink(config, "KEY_A") == pytest.approx(7.0)
    # Then the key takes nothing while it cools down, and then at most its effective cap
    assert dispatched(gate, config) == []
    redis_db.delete("vq:cool:sim:KEY_A")
    assert len(dispatched(gate, config)) == 7
    # And each accepted submit grows the cap back, until it is the configured one again
    for _ in range(40):
        gate.grow(config, "KEY_A")
    assert gate.effective_cap(config, "KEY_A") == 10
    assert redis_db.get("vq:cap:sim:KEY_A") is None


def test_the_effective_cap_never_goes_below_one(gate: Gate) -> None:
    config = catalogue(max_in_flight=3).get("sim")
    for _ in range(10):
        gate.shrink(config, "KEY_A")
    assert gate.effective_cap(config, "KEY_A") == 1


# -- the shared rate limit ------------------------------------------------------------------


def _hammer(url: str, seconds: float, out: Any) -> None:
    limiter = RateLimiter(redis.Redis.from_url(url))
    config = catalogue(requests_per_second=20).get("sim")
    granted, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        if limiter.try_take(config, "KEY_A") == 0:
            granted += 1
        else:
            time.sleep(0.002)
    out.put(granted)


def test_the_request_rate_is_shared_by_worker_processes(live: Any) -> None:
    # Given two processes taking tokens for the same key (20 per second, burst 20) for 2 s
    url = live.settings.redis_url.rsplit("/", 1)[0] + "/13"
    redis.Redis.from_url(url).flushdb()
    out: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_hammer, args=(url, 2.0, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    total = out.get() + out.get()
    # Then together they got the burst plus 2 s worth, not twice that
    assert 50 <= total <= 64


def test_a_throttled_request_is_put_off_not_failed(redis_db: redis.Redis) -> None:
    limiter = RateLimiter(redis_db)
    config = catalogue(requests_per_second=1).get("sim")
    assert limiter.try_take(config, "KEY_A") == 0
    wait = limiter.try_take(config, "KEY_A")
    assert 0 < wait <= 1.0


# -- key stickiness and the learned first poll ------------------------------------------


def test_a_job_is_polled_with_the_key_that_submitted_it(
    redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool of two keys with caps 1 and 2, and three jobs
    monkeypatch.setenv("KEY_A", "secret-a")
    monkeypatch.setenv("KEY_B", "secret-b")
    cat = catalogue(
        api_key_env=["KEY_A", "KEY_B"], max_in_flight=1, keys={"KEY_B": {"max_in_flight": 2}}
    )
    fake = FakeZhipu()
    d = fake_deps(redis_db, cat, fake)
    for i in range(3):
        job(d.store, f"j{i}", producer="A")
    steps = endings.dispatch("sim", d)
    # When each is submitted and then polled twice
    for step in steps:
        submit.submit(step.job_id, d)
        for _ in range(2):
            redis_db.hset(f"vq:job:{step.job_id}", "step_until", 0)
            poll.poll(step.job_id, d)
    # Then both keys were used, and every job's polls carried its submitter's key
    held = {s.job_id: d.store.fields(s.job_id)["key_id"] for s in steps}
    assert sorted(held.values()) == ["KEY_A", "KEY_B", "KEY_B"]
    per_job = [fake.auth[i * 3 : i * 3 + 3] for i in range(3)]
    for calls in per_job:
        assert len({auth for _, auth in calls}) == 1


def test_the_first_poll_is_learned_from_recent_durations(
    redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEY_A", "secret-a")
    # (A process reads the durations at most every 30 s; this test wants them at once.)
    monkeypatch.setattr("workers.deps.DURATIONS_REFRESH_S", 0.0)
    d = fake_deps(redis_db, catalogue(first_poll_s=2), FakeZhipu())
    # Given no history, the first poll is the configured floor and polls back off
    job(d.store, "cold", producer="A")
    endings.dispatch("sim", d)
    [step] = submit.submit("cold", d)
    assert step.countdown_s == 2
    assert d.store.fields("cold")["poll_mode"] == "backoff"
    # Given 40 recent generations of 30-40 s, the first poll lands near the earliest of them
    for i in range(40):
        d.stats.record_duration("sim", "cogvideox-flash", 30 + i / 4)
    job(d.store, "warm", producer="A")
    endings.dispatch("sim", d)
    [step] = submit.submit("warm", d)
    assert 30 <= step.countdown_s <= 31
    assert d.store.fields("warm")["poll_mode"] == "steady"
    # And after it, polls come every max_poll_interval_s at most (jittered shorter)
    config = d.config("sim")
    gaps = [schedule.next_poll(config, n, steady=True) for n in range(1, 50)]
    assert all(9.0 <= g <= 10.0 for g in gaps)


def test_a_shared_account_s_429s_requeue_jobs_and_none_fails(idle_stack: Any) -> None:
    # Given a key capped at 3 whose account really has room for 2 (the simulator says 429)
    live = idle_stack
    live.set_sim(concurrency_limit=2, gen_time_s=0.5, gen_jitter_s=0.1)
    # When 10 jobs run
    ids = [
        live.client.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}).id
        for _ in range(10)
    ]
    records = live.wait_all(ids, timeout_s=120)
    # Then every job succeeded, some went back to their queue, and the provider never had 3
    assert {r.state for r in records} == {"succeeded"}
    stats = live.sim_stats()
    assert stats["rate_limited_429"] >= 1
    assert stats["max_in_flight_by_key"]["sim-key-zhipu-test"] == 2
    events = [e["event"] for i in ids for e in live.client.events(i)]
    assert any(e.startswith("requeued: concurrency_limited") for e in events)
