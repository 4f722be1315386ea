"""Creating jobs (``workers.redis.enqueue``): the records a create returns without reading
them back, idempotency inside and across batches, and the waiting-set order of a batch.

API tests go through the app in process on database 15 of the live Redis (no worker listens
there: jobs stay queued); store tests use the ``redis_db`` fixture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from producer import api
from tests.support.api import GOOD, bearer, in_process_api
from tests.support.live import LiveStack
from workers.domain.jobs import JobSpec, State
from workers.redis import keys
from workers.redis.enqueue import Creator, NewJob
from workers.redis.store import Store

VARIED = [
    GOOD,
    {**GOOD, "priority": 7, "labels": {"shop": "acme", "team": "a"}},
    {**GOOD, "prompt": "un phare au crépuscule, 灯塔 🌅", "options": {"user_id": "user-0001"}},
    {**GOOD, "model": "cogvideox-3", "duration": 5, "size": "1280x720", "fps": 30},
    {**GOOD, "idempotency_key": "varied-1", "with_audio": True},
]


@pytest.fixture
def local(live: LiveStack) -> Iterator[tuple[TestClient, redis.Redis]]:
    with in_process_api(live) as pair:
        yield pair


def test_a_batch_returns_exactly_the_records_a_read_returns(local: Any) -> None:
    app, _ = local
    auth = bearer("token-a")
    # When jobs are created, one by one and in a batch
    one = app.post("/v1/jobs", json={**GOOD, "prompt": "alone"}, headers=auth)
    many = app.post("/v1/jobs/batch", json={"jobs": VARIED}, headers=auth)
    assert one.status_code == many.status_code == 202, many.text
    created = [one.json(), *many.json()["jobs"]]
    # Then each record returned is, field by field, what a read of the job returns
    for record in created:
        read = app.get(f"/v1/jobs/{record['id']}", headers=auth).json()
        assert list(record) == list(read)
        for field, value in read.items():
            assert record[field] == value, field
        assert (record["state"], record["attempts"], record["polls"]) == ("queued", 0, 0)


def test_the_same_key_twice_in_a_batch_is_one_job_and_another_spec_is_a_409(
    local: Any,
) -> None:
    app, store = local
    auth = bearer("token-a")
    keyed = {**GOOD, "idempotency_key": "twice"}
    # The same key and spec twice in one batch: one job, returned at both places
    jobs = app.post("/v1/jobs/batch", json={"jobs": [keyed, GOOD, keyed]}, headers=auth)
    assert jobs.status_code == 202
    ids = [j["id"] for j in jobs.json()["jobs"]]
    assert ids[0] == ids[2] != ids[1]
    assert store.zcard(keys.all_jobs()) == 2
    # The same key with another spec in one batch: 409 naming the second, nothing created
    other = {**keyed, "prompt": "something else"}
    conflict = app.post("/v1/jobs/batch", json={"jobs": [GOOD, keyed, other]}, headers=auth)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["field"] == "jobs.2.idempotency_key"
    assert store.zcard(keys.all_jobs()) == 2


def test_a_key_held_for_another_request_refuses_the_whole_batch(local: Any) -> None:
    app, store = local
    auth = bearer("token-a")
    first = app.post("/v1/jobs", json=GOOD, headers={**auth, "idempotency-key": "held"}).json()
    sequence = store.get(keys.sequence())
    # When a batch reuses the key for another spec, after a job that would be new
    specs = [{**GOOD, "prompt": "new"}, {**GOOD, "prompt": "other", "idempotency_key": "held"}]
    answer = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
    # Then 409 naming it, and nothing at all was written
    assert answer.status_code == 409
    assert answer.json()["error"] == {
        "code": "idempotency_conflict",
        "message": "jobs[1]: this idempotency key was already used with a different job spec",
        "field": "jobs.1.idempotency_key",
    }
    assert store.zcard(keys.all_jobs()) == 1 and store.get(keys.sequence()) == sequence
    # Another producer's same key is its own key: its own job, neither a conflict nor ours
    theirs = app.post(
        "/v1/jobs", json=GOOD, headers={**bearer("token-b"), "idempotency-key": "held"}
    )
    assert theirs.status_code == 202 and theirs.json()["id"] != first["id"]
    # And the same spec again returns the job as it is now (read back: it moved on)
    app.delete(f"/v1/jobs/{first['id']}", headers=auth)
    again = app.post("/v1/jobs/batch", json={"jobs": [{**GOOD, "idempotency_key": "held"}]},
                     headers=auth).json()["jobs"]  # fmt: skip
    assert again == [app.get(f"/v1/jobs/{first['id']}", headers=auth).json()]
    assert again[0]["state"] == "cancelled"


def spec(priority: int, **extra: Any) -> JobSpec:
    data = {"provider": "sim", "model": "m", "prompt": "p", "priority": priority, **extra}
    return JobSpec.model_validate(data)


def test_a_batch_waits_by_priority_then_in_order_with_every_index(redis_db: redis.Redis) -> None:
    # Given a batch of mixed priorities, some for a tenant
    priorities = [0, 5, 0, 9, 5, 0]
    jobs = [NewJob.of(f"job-{i}", spec(p)) for i, p in enumerate(priorities)]
    jobs.append(NewJob.of("job-t", spec(3, labels={"tenant": "acme"})))
    created = Creator(redis_db).create(jobs, producer="api")
    assert created is not None and created.existing == {} and created.conflict is None
    # Then the waiting set holds them by priority, then in batch order
    order = redis_db.zrange(keys.waiting("sim", "api"), 0, -1)
    assert order == [b"job-3", b"job-1", b"job-4", b"job-0", b"job-2", b"job-5"]
    assert redis_db.zrange(keys.waiting("sim", "acme"), 0, -1) == [b"job-t"]
    # And each fair-share key is scored by its first waiting job
    heads: Any = redis_db.zrange(keys.fair_queue("sim"), 0, -1, withscores=True)
    fair = dict(heads)
    assert fair[b"api"] == redis_db.zscore(keys.waiting("sim", "api"), "job-3")
    assert fair[b"acme"] == redis_db.zscore(keys.waiting("sim", "acme"), "job-t")
    # And every index has every job, whose timeline starts with 'created'
    ids = {job.job_id.encode() for job in jobs}
    assert set(redis_db.zrange(keys.all_jobs(), 0, -1)) == ids
    assert set(redis_db.zrange(keys.by_producer("api"), 0, -1)) == ids
    assert redis_db.smembers(keys.by_state(State.QUEUED)) == ids
    assert redis_db.smembers(f"{keys.PREFIX}:producers") == {keys.by_producer("api").encode()}
    # (the creation is read back from created_at: no timeline key yet, workers.domain.lean)
    [first] = Store(redis_db).events("job-0")
    assert first["event"] == "created" and not redis_db.exists(keys.events("job-0"))
    assert redis_db.get(keys.sequence()) == b"7"


def test_the_api_fills_a_free_slot_right_after_answering(live: LiveStack) -> None:
    with in_process_api(live) as (_, store), TestClient(api.app) as app:
        # When a job is posted while its provider has a free slot (no worker listens here)
        job = app.post("/v1/jobs", json={**GOOD, "provider": "solo"}, headers=bearer("token-a"))
        assert job.status_code == 202 and job.json()["state"] == "queued"
        # Then the dispatch after the answer gives it the slot at once (not the sweep, later)
        deadline = time.monotonic() + 1.0
        while store.zscore(keys.gate("solo", "SIM_SOLO_KEY"), job.json()["id"]) is None:
            assert time.monotonic() < deadline, "the job was not dispatched"
            time.sleep(0.01)
