"""The concurrency gate against a real Redis: the DISPATCH, RENEW and EXPIRED Lua.

The gate's one promise (docs/design.md §2): never more leases per key than the key's cap, whoever
calls dispatch and however often.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import redis

from config.providers import ProviderConfig, parse
from workers.domain.errors import ConfigError
from workers.domain.jobs import JobSpec, State
from workers.redis import keys
from workers.redis.gate import SUBMIT_DUE_S, Dispatched, Gate
from workers.redis.store import Store

LEASE_S = 300.0


def provider(
    max_in_flight: int = 5, keys_: list[str] | None = None, **table: Any
) -> ProviderConfig:
    catalogue = parse(
        {
            "providers": {
                "sim": {
                    "kind": "zhipu",
                    "base_url": "http://127.0.0.1:9/zhipu/api/paas/v4",
                    "api_key_env": keys_ or ["KEY_A"],
                    "max_in_flight": max_in_flight,
                    **table,
                }
            }
        }
    )
    return catalogue.get("sim")


def spec(priority: int = 0) -> JobSpec:
    return JobSpec(provider="sim", model="cogvideox-flash", prompt="a boat", priority=priority)


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def enqueue(store: Store, count: int, *, prefix: str = "job", priority: int = 0) -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(count)]
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        store.create(job_id, spec(priority), pipe=pipe)
    pipe.execute()
    return ids


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db, grace_s=0.5)


@pytest.fixture
def gate(redis_db: redis.Redis) -> Gate:
    return Gate(redis_db, lease_s=LEASE_S)


# -- dispatch ------------------------------------------------------------------------------


def test_dispatch_pops_higher_priority_first_then_fifo(store: Store, gate: Gate) -> None:
    # Given jobs of priorities 0, 9 and 5 enqueued interleaved
    store.create("low-1", spec(0))
    store.create("mid-1", spec(5))
    store.create("top-1", spec(9))
    store.create("low-2", spec(0))
    store.create("mid-2", spec(5))
    store.create("top-2", spec(9))
    # When a key with room for all of them dispatches
    dispatched = gate.dispatch(provider(max_in_flight=10))
    # Then they come out priority 9 first, and first-in first-out within a priority
    assert [d.job_id for d in dispatched] == ["top-1", "top-2", "mid-1", "mid-2", "low-1", "low-2"]


def test_dispatch_fills_at_most_the_cap_of_a_key(store: Store, gate: Gate) -> None:
    # Given 10 waiting jobs and a key capped at 3
    enqueue(store, 10)
    config = provider(max_in_flight=3)
    # When it dispatches, twice
    first = gate.dispatch(config)
    second = gate.dispatch(config)
    # Then 3 jobs got a slot, the second call found no free slot, 7 still wait
    assert [d.job_id for d in first] == ["job-0", "job-1", "job-2"]
    assert second == []
    assert gate.in_flight("sim", "KEY_A") == 3
    assert gate.waiting("sim") == 7


def test_dispatch_round_robins_over_keys_with_their_own_caps(store: Store, gate: Gate) -> None:
    # Given 10 waiting jobs, and three keys: A capped at 1, B at 3, C at the provider's 2
    enqueue(store, 10)
    config = provider(
        max_in_flight=2,
        keys_=["KEY_A", "KEY_B", "KEY_C"],
        keys={"KEY_A": {"max_in_flight": 1}, "KEY_B": {"max_in_flight": 3}},
    )
    # When the provider dispatches
    dispatched = gate.dispatch(config)
    # Then the keys take turns, each until its own cap is full
    assert [(d.job_id, d.key_id) for d in dispatched] == [
        ("job-0", "KEY_A"),
        ("job-1", "KEY_B"),
        ("job-2", "KEY_C"),
        ("job-3", "KEY_B"),
        ("job-4", "KEY_C"),
        ("job-5", "KEY_B"),
    ]
    assert [gate.in_flight("sim", k) for k in ("KEY_A", "KEY_B", "KEY_C")] == [1, 3, 2]
    assert gate.waiting("sim") == 4


def test_dispatch_drops_a_waiting_job_that_is_no_longer_queued_without_a_slot(
    store: Store, gate: Gate, redis_db: redis.Redis
) -> None:
    # Given a cancelled job still in the waiting set, a job whose record is gone, then a job
    store.create("cancelled", spec())
    store.transition("cancelled", [State.QUEUED], State.CANCELLED)
    store.create("gone", spec())
    redis_db.delete(keys.job("gone"))
    store.create("queued", spec())
    # When a key with a single slot dispatches
    dispatched = gate.dispatch(provider(max_in_flight=1))
    # Then the queued job takes the slot; the other two left the waiting set without one
    assert dispatched == [Dispatched("queued", "KEY_A")]
    assert gate.holders("sim", "KEY_A") == ["queued"]
    assert gate.waiting("sim") == 0
    assert store.fields("cancelled").get("key_id") is None
    assert redis_db.exists(keys.job("gone")) == 0


def test_a_dispatched_job_gets_its_key_a_lease_and_a_due_submit(
    store: Store, gate: Gate, redis_db: redis.Redis
) -> None:
    # Given a waiting job
    store.create("job-1", spec())
    # When it is dispatched
    earliest = redis_now_ms(redis_db)
    [dispatched] = gate.dispatch(provider())
    latest = redis_now_ms(redis_db)
    # Then it remembers its key, and its step (submit) may run now
    assert dispatched == Dispatched("job-1", "KEY_A")
    fields = store.fields("job-1")
    assert fields["key_id"] == "KEY_A"
    assert fields["state"] == State.QUEUED
    assert earliest <= int(fields["step_until"]) <= latest
    # And it holds a lease until now + lease, by Redis TIME
    lease = redis_db.zscore(keys.gate("sim", "KEY_A"), "job-1")
    assert lease is not None
    assert earliest + LEASE_S * 1000 <= lease <= latest + LEASE_S * 1000
    # And the sweep will re-send its submit if it has not started within SUBMIT_DUE_S
    due = redis_db.zscore(keys.due(), "job-1")
    assert due is not None
    assert earliest + SUBMIT_DUE_S * 1000 <= due <= latest + SUBMIT_DUE_S * 1000


def test_dispatch_with_nothing_waiting_takes_no_slot(gate: Gate) -> None:
    assert gate.dispatch(provider()) == []
    assert gate.in_flight("sim", "KEY_A") == 0


def test_concurrent_dispatchers_never_exceed_the_cap(store: Store, redis_db: redis.Redis) -> None:
    # Given 200 waiting jobs and a key capped at 5
    enqueue(store, 200)
    config = provider(max_in_flight=5)
    where = {k: redis_db.connection_pool.connection_kwargs[k] for k in ("host", "port", "db")}
    barrier = threading.Barrier(16, timeout=10)
    results: list[list[Dispatched]] = []

    def dispatcher() -> None:
        gate = Gate(redis.Redis(**where), lease_s=LEASE_S)
        barrier.wait()
        for _ in range(5):
            results.append(gate.dispatch(config))

    # When 16 threads, each with its own connection, dispatch 5 times each at once
    threads = [threading.Thread(target=dispatcher) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 5 distinct jobs got a slot, and 195 still wait
    dispatched = [d.job_id for batch in results for d in batch]
    assert len(results) == 80
    assert len(dispatched) == 5
    assert len(set(dispatched)) == 5
    assert Gate(redis_db).in_flight("sim", "KEY_A") == 5
    assert redis_db.zcard(keys.waiting("sim")) == 195


def test_an_expired_lease_still_counts_against_the_cap(store: Store, redis_db: redis.Redis) -> None:
    # Given a key capped at 2 whose two leases have expired (their jobs may still be running)
    gate = Gate(redis_db, lease_s=0.02)
    enqueue(store, 4)
    config = provider(max_in_flight=2)
    assert len(gate.dispatch(config)) == 2
    time.sleep(0.05)
    assert sorted(gate.expired("sim", "KEY_A")) == ["job-0", "job-1"]
    # When the provider dispatches again
    again = gate.dispatch(config)
    # Then no slot is reused: only the sweep may give an expired lease back
    assert again == []
    assert gate.holders("sim", "KEY_A") == ["job-0", "job-1"]
    assert gate.waiting("sim") == 2


def test_expired_lists_only_leases_past_their_expiry(
    store: Store, gate: Gate, redis_db: redis.Redis
) -> None:
    enqueue(store, 2)
    gate.dispatch(provider())
    redis_db.zadd(keys.gate("sim", "KEY_A"), {"job-0": redis_now_ms(redis_db) - 1000})
    assert gate.expired("sim", "KEY_A") == ["job-0"]


# -- renew and release ---------------------------------------------------------------------


def test_renew_extends_a_held_lease(store: Store, gate: Gate, redis_db: redis.Redis) -> None:
    # Given a job whose lease is about to run out
    store.create("job-1", spec())
    gate.dispatch(provider())
    redis_db.zadd(keys.gate("sim", "KEY_A"), {"job-1": redis_now_ms(redis_db) + 100})
    # When it renews
    earliest = redis_now_ms(redis_db)
    held = gate.renew("sim", "KEY_A", "job-1")
    # Then the lease runs a full lease time from now
    assert held
    lease = redis_db.zscore(keys.gate("sim", "KEY_A"), "job-1")
    assert lease is not None
    assert lease >= earliest + LEASE_S * 1000


def test_renew_without_a_lease_returns_false_and_takes_none(gate: Gate) -> None:
    # Given a job holding no lease (e.g. the sweep reclaimed it)
    # When it tries to renew
    held = gate.renew("sim", "KEY_A", "job-1")
    # Then it learns it holds none, and renewing did not take a slot behind the cap's back
    assert not held
    assert gate.in_flight("sim", "KEY_A") == 0


def test_release_frees_the_slot_for_the_next_dispatch(store: Store, gate: Gate) -> None:
    # Given a key with one slot, held, and a job waiting for it
    config = provider(max_in_flight=1)
    store.create("first", spec())
    store.create("second", spec())
    assert [d.job_id for d in gate.dispatch(config)] == ["first"]
    assert gate.dispatch(config) == []
    # When the first job releases its slot
    gate.release("sim", "KEY_A", "first")
    # Then the next dispatch gives it to the waiting job
    assert gate.dispatch(config) == [Dispatched("second", "KEY_A")]
    assert gate.holders("sim", "KEY_A") == ["second"]


def test_keys_with_different_caps_are_counted_separately(store: Store, gate: Gate) -> None:
    enqueue(store, 6)
    config = provider(max_in_flight=2, keys_=["KEY_A", "KEY_B"])
    dispatched = gate.dispatch(config)
    assert Counter(d.key_id for d in dispatched) == {"KEY_A": 2, "KEY_B": 2}


def test_a_key_listed_twice_cannot_double_its_cap() -> None:
    # Given a provider file that lists the same key variable twice
    # When it is loaded, Then it is refused before any dispatch could double the key's cap
    with pytest.raises(ConfigError, match="api_key_env"):
        provider(max_in_flight=2, keys_=["KEY_A", "KEY_A"])
