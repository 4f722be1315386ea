"""The archive's Redis side on a bare Redis: which jobs are due, the snapshot, the conditional
delete, the TTL walk, and the scripts under another key layout (``workers.redis.archive``)."""

from __future__ import annotations

import re
import time

import pytest
import redis

from producer.batch import new_job_id
from tests.support.storing import job_in, spec
from tests.unit.test_scripts import only_alt_keys, use_alt_layout
from workers.domain.change import Change
from workers.domain.jobs import State, now_iso
from workers.domain.uuid7 import created_ms, day_of
from workers.redis import archive, keys
from workers.redis.archive import ArchiveRows
from workers.redis.store import Store


def later_ms() -> int:
    """An edge past every job made so far (read at each use: the suite may run this module
    minutes after importing it)."""
    return int(time.time() * 1000) + 60_000


def finished(store: Store, state: State = State.SUCCEEDED, **change: object) -> str:
    job_id = new_job_id()
    job_in(store, job_id, state)
    done = Change(completed_at=now_iso(), **change)  # type: ignore[arg-type]
    assert store.transition(job_id, [state], None, change=done)
    return job_id


def test_a_job_id_carries_its_day() -> None:
    job_id = new_job_id()
    assert abs(created_ms(job_id) - time.time() * 1000) < 5000  # type: ignore[operator]
    assert day_of("01890a5d" + "ac96" + "7" + "0" * 19) is not None
    assert created_ms("w0001") is None and day_of("0" * 32) is None


def test_only_finished_settled_jobs_before_the_edge_are_due(redis_db: redis.Redis) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    done = [finished(store), finished(store, State.FAILED), finished(store, State.CANCELLED)]
    running = new_job_id()
    job_in(store, running, State.RUNNING)
    at_provider = finished(store, State.CANCELLED, at_provider=True)
    webhook = finished(store, notify="pending")
    job_in(store, "not-a-uuid7", State.SUCCEEDED)
    redis_db.hset(keys.job("not-a-uuid7"), "completed_at", now_iso())
    found, reached = rows.due(later_ms(), limit=100, budget=1000)
    assert sorted(found) == sorted(done) and reached == 7
    assert rows.due(int(time.time() * 1000) - 60_000, limit=100, budget=1000) == ([], 0)
    first, reached = rows.due(later_ms(), limit=2, budget=1000)
    assert first == done[:2] and reached == 2
    assert rows.due(later_ms(), limit=100, budget=1000, start=reached)[0] == done[2:]
    assert rows.due(later_ms(), limit=100, budget=2)[0] == done[:2]  # looked at 2 only
    assert running and at_provider and webhook


def test_the_delete_removes_everything_only_while_unchanged(redis_db: redis.Redis) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    job_id = new_job_id()
    assert store.create(job_id, spec(idempotency_key="order-1"), producer="p") == (job_id, True)
    for before, after in ((State.QUEUED, State.SUBMITTING), (State.SUBMITTING, State.RUNNING)):
        assert store.transition(job_id, [before], after)
    assert store.transition(
        job_id, [State.RUNNING], State.FAILED, change=Change(completed_at=now_iso())
    )
    assert redis_db.ttl(keys.job(job_id)) > 0
    [snap] = rows.snapshots([job_id])
    assert redis_db.ttl(keys.job(job_id)) == -1  # only the archiver removes it now
    assert snap.producer == "p" and snap.fields["state"] == "failed"
    [timeline] = rows.timelines([job_id])
    assert timeline == store.events(job_id) and timeline[-1]["state"] == "failed"

    store.note(job_id, "a late event")  # changed since it was written to S3: kept
    assert rows.delete([snap]) == [0]
    assert redis_db.exists(keys.job(job_id))

    [snap] = rows.snapshots([job_id])
    assert rows.delete([snap]) == [1]
    assert rows.delete([snap]) == [-1]
    assert not redis_db.exists(keys.job(job_id), keys.events(job_id))
    assert redis_db.zscore(keys.all_jobs(), job_id) is None
    assert redis_db.zscore(keys.by_producer("p"), job_id) is None
    assert not redis_db.sismember(keys.by_state("failed"), job_id)
    assert not redis_db.exists(keys.idempotency("order-1", producer="p"))


def test_an_idempotency_key_naming_another_job_is_kept(redis_db: redis.Redis) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    job_id = finished(store)
    redis_db.set(keys.idempotency("k", producer=""), "another-job")
    fields = redis_db.hget(keys.job(job_id), "spec")
    assert fields is not None
    redis_db.hset(keys.job(job_id), "spec", '{"idempotency_key":"k"}')
    [snap] = rows.snapshots([job_id])
    assert rows.delete([snap]) == [1]
    assert redis_db.get(keys.idempotency("k", producer="")) == b"another-job"


def test_a_job_that_is_no_longer_settled_is_not_deleted(redis_db: redis.Redis) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    job_id = finished(store)
    [snap] = rows.snapshots([job_id])
    redis_db.hset(keys.job(job_id), "notify", "pending")
    assert rows.delete([snap]) == [0]


def test_the_protect_walk_takes_ttls_off_once_and_moves_on(redis_db: redis.Redis) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    ids = [finished(store) for _ in range(5)]
    # Three jobs made in one millisecond: a page ending inside the run takes all of it.
    for job_id in ids[2:]:
        redis_db.zadd(keys.all_jobs(), {job_id: 1000.0})
    for job_id in ids[:2]:
        redis_db.zadd(keys.all_jobs(), {job_id: 500.0})
    assert all(redis_db.ttl(keys.job(j)) > 0 for j in ids)
    assert rows.protect(later_ms(), limit=3) == 5
    assert all(redis_db.ttl(keys.job(j)) == -1 for j in ids)
    assert rows.protect(later_ms(), limit=3) == 0  # nothing new past the walk


def test_the_rescan_walk_finds_a_job_that_ended_after_the_first_walk_passed(
    redis_db: redis.Redis,
) -> None:
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    late = new_job_id()
    job_in(store, late, State.RUNNING)
    assert rows.protect(later_ms(), limit=10) == 1  # passed while it ran: no TTL to take off
    assert store.transition(late, [State.RUNNING], State.FAILED)
    assert redis_db.ttl(keys.job(late)) > 0
    assert rows.protect(later_ms(), limit=10) == 0  # the first walk never comes back
    assert rows.protect(later_ms(), limit=10, rescan=True) == 1
    assert redis_db.ttl(keys.job(late)) == -1
    assert rows.protect(later_ms(), limit=10, rescan=True) == 0  # the end: it starts over
    assert rows.protect(later_ms(), limit=10, rescan=True) == 1


def test_one_lock_at_a_time(redis_db: redis.Redis) -> None:
    rows = ArchiveRows(redis_db)
    token = rows.lock(10)
    assert token is not None and rows.lock(10) is None
    rows.unlock("not-ours")
    assert rows.lock(10) is None
    rows.unlock(token)
    assert rows.lock(10) is not None


def test_the_scripts_work_under_another_layout(
    redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_alt_layout(monkeypatch)
    store, rows = Store(redis_db), ArchiveRows(redis_db)
    job_id = finished(store)
    assert rows.due(later_ms(), limit=10, budget=100)[0] == [job_id]
    rows.protect(later_ms(), limit=10)
    [snap] = rows.snapshots([job_id])
    only_alt_keys(redis_db)
    assert rows.delete([snap]) == [1]
    assert not redis_db.exists(keys.job(job_id))


@pytest.mark.parametrize("name", ["SNAPSHOT", "DELETE"])
def test_a_script_spells_no_key(name: str) -> None:
    lua = re.sub(r"--[^\n]*", "", getattr(archive, name))
    literals = re.findall(r"'([^']*)'|\"([^\"]*)\"", lua)
    assert [a or b for a, b in literals if ":" in a + b or (a or b).startswith(keys.PREFIX)] == []
    for line in lua.splitlines():
        if re.search(r"ARGV\[\d+\]", line):
            assert line.startswith("local ")
