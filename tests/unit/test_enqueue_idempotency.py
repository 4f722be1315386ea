"""Idempotency keys are a producer's own: the same key from two producers is two jobs (the
key tells neither about the other), while within one producer the same key and body is the
same job and another body a conflict. On the unit tier's Redis, through the one CREATE call.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from producer import batch
from workers.domain.jobs import JobSpec, State
from workers.redis import keys
from workers.redis.enqueue import Created, Creator, NewJob
from workers.redis.records import JobRecords
from workers.redis.store import Store


def spec(key: str | None = "order-1", **overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {"provider": "sim", "model": "m", "prompt": "a boat"}
    return JobSpec.model_validate({**fields, "idempotency_key": key, **overrides})


def create(client: redis.Redis, producer: str, *specs: JobSpec, first: int = 0) -> Created:
    jobs = [
        NewJob.of(f"{producer}-{first + n}", s, batch.fingerprint(s, producer))
        for n, s in enumerate(specs)
    ]
    created = Creator(client).create(jobs, producer=producer)
    assert created is not None
    return created


def holder(client: redis.Redis, key: str, producer: str) -> bytes | None:
    return client.get(keys.idempotency(key, producer=producer))  # type: ignore[return-value]


def test_the_layout_names_the_producer_and_keeps_the_old_digest() -> None:
    digest = "8254c329a92850f6d539dd376f4816ee"  # sha256("k"), as the old layout had it
    assert keys.idempotency("k", producer="p") == f"vq:idem:p:{digest}"
    assert keys.idempotency("k") == f"vq:idem::{digest}"
    assert keys.legacy_idempotency("k") == f"vq:idem:{digest}"


def test_the_same_key_from_two_producers_is_two_jobs(redis_db: redis.Redis) -> None:
    # Given a job producer A created with a key
    assert create(redis_db, "A", spec()).existing == {}
    # When producer B uses the same key, with the same body and then with another
    same = create(redis_db, "B", spec())
    # Then B's job is its own: no conflict, not A's job
    assert (same.existing, same.conflict) == ({}, None)
    assert holder(redis_db, "order-1", "A") == b"A-0"
    assert holder(redis_db, "order-1", "B") == b"B-0"
    assert redis_db.zcard(keys.all_jobs()) == 2
    assert redis_db.hget(keys.job("B-0"), "producer") == b"B"


def test_within_one_producer_the_key_still_means_its_one_job(redis_db: redis.Redis) -> None:
    # Given a job producer A created with a key, and B's job under the same key
    create(redis_db, "A", spec())
    create(redis_db, "B", spec(prompt="B's own"))
    sequence = redis_db.get(keys.sequence())
    # When A sends the same body again: its job; another body: a conflict, nothing written
    again = create(redis_db, "A", spec(), first=1)
    other = create(redis_db, "A", spec(prompt="another"), first=2)
    assert (again.existing, again.conflict) == ({0: "A-0"}, None)
    assert (other.existing, other.conflict) == ({0: "A-0"}, 0)
    assert redis_db.get(keys.sequence()) == sequence
    assert redis_db.zcard(keys.all_jobs()) == 2
    # And B's key was never A's to hold: B's same body is B's job
    assert create(redis_db, "B", spec(prompt="B's own"), first=1).existing == {0: "B-0"}


def test_a_batch_sees_only_its_producers_keys(redis_db: redis.Redis) -> None:
    # Given producer A's batch, keys order-0..2 (job i: "{key}:{i}", as the API gives them)
    specs = [spec(f"order:{n}", labels={"n": str(n)}) for n in range(3)]
    assert create(redis_db, "A", *specs).existing == {}
    # When B sends a batch with the same keys, then all of its jobs are new (one CREATE)
    theirs = create(redis_db, "B", *specs, spec(None))
    assert (theirs.existing, theirs.conflict) == ({}, None)
    assert redis_db.zcard(keys.all_jobs()) == 7
    # And a retry of A's batch is A's jobs again; a changed job is a conflict for A, and for
    # B (which holds the key too), each against its own job
    assert create(redis_db, "A", *specs, first=3).existing == {0: "A-0", 1: "A-1", 2: "A-2"}
    changed = [*specs[:2], spec("order:2", prompt="changed")]
    assert create(redis_db, "A", *changed, first=3).conflict == 2
    assert create(redis_db, "B", *changed[2:], first=9).conflict == 0


@pytest.mark.parametrize(
    ("one", "two"),
    [(("a:b", "c"), ("a", "b:c")), (("p", "k"), ("", "k")), (("p:", "k"), ("p", ":k"))],
)
def test_producers_and_keys_with_colons_never_share_a_redis_key(
    redis_db: redis.Redis, one: tuple[str, str], two: tuple[str, str]
) -> None:
    assert keys.idempotency(one[1], producer=one[0]) != keys.idempotency(two[1], producer=two[0])
    create(redis_db, one[0], spec(one[1]))
    assert create(redis_db, two[0], spec(two[1]), first=1).existing == {}


def test_a_key_of_the_old_layout_still_counts_for_its_own_producer(redis_db: redis.Redis) -> None:
    # Given a job of producer A whose key was written in the layout before producers were in
    # it (vq:idem:{digest}, one for every producer)
    create(redis_db, "A", spec())
    legacy = keys.legacy_idempotency("order-1")
    redis_db.rename(keys.idempotency("order-1", producer="A"), legacy)
    # When A retries the request: its job; with another body: a conflict
    assert create(redis_db, "A", spec(), first=1).existing == {0: "A-0"}
    assert create(redis_db, "A", spec(prompt="other"), first=2).conflict == 0
    # But for producer B the old key is not its: a job of its own, under its own key
    assert create(redis_db, "B", spec()).existing == {}
    assert holder(redis_db, "order-1", "B") == b"B-0"
    assert legacy.count(":") == 2 and redis_db.get(legacy) == b"A-0"
    # And an old key whose job is gone counts for nobody
    redis_db.delete(keys.job("A-0"))
    assert create(redis_db, "A", spec(), first=3).existing == {}


def test_a_purge_frees_only_its_producers_key(redis_db: redis.Redis) -> None:
    # Given A's and B's jobs under the same key, A's finished (cancelled while queued)
    create(redis_db, "A", spec())
    create(redis_db, "B", spec())
    assert Store(redis_db).transition("A-0", [State.QUEUED], State.CANCELLED)
    records = JobRecords(redis_db)
    # When A's job is purged
    records.purge(records.finished("A-0", "A"))
    # Then A's key is free again (a new job), and B's still means B's job
    assert holder(redis_db, "order-1", "A") is None
    assert holder(redis_db, "order-1", "B") == b"B-0"
    assert create(redis_db, "A", spec(), first=1).existing == {}
    assert create(redis_db, "B", spec(), first=1).existing == {0: "B-0"}
