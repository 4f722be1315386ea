"""The job store against a real Redis: records, indexes, the CREATE and CLAIM Lua, reading.

Every time the scripts write is Redis ``TIME``; the tests read the same clock
(``redis_now_ms``) to bound what they expect. Transitions are ``test_transitions``, the typed
rows and changes ``test_rows``.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.records import RECORD_FIELDS
from tests.support.storing import (
    GRACE_S,
    ISO_UTC_MICROS,
    job_in,
    redis_now_ms,
    snapshot,
    spec,
)
from workers.domain.jobs import State
from workers.redis import keys, store_scripts
from workers.redis.store import CLAIM_TOLERANCE_MS, Store


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db, grace_s=GRACE_S)


# -- create --------------------------------------------------------------------------------


def test_create_queues_the_job_in_its_waiting_set_and_indexes(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given an empty store
    # When a job is created
    created = store.create("job-1", spec(priority=3))
    # Then it is in its provider's waiting set (priority 3, first in sequence)
    assert created == ("job-1", True)
    assert redis_db.zscore(keys.waiting("sim"), "job-1") == keys.wait_score(3, 1)
    # And in the all-jobs index, the queued state set, and nowhere else
    assert redis_db.zscore(keys.all_jobs(), "job-1") is not None
    assert {s for s in State if redis_db.sismember(keys.by_state(s), "job-1")} == {State.QUEUED}
    # And it is not yet due for anything
    assert redis_db.zscore(keys.due(), "job-1") is None


def test_create_records_a_first_created_event(store: Store) -> None:
    store.create("job-1", spec())
    [event] = store.events("job-1")
    record = store.get("job-1")
    assert record is not None
    assert event == {"at": record.created_at, "state": "queued", "event": "created"}


def test_created_record_has_exactly_the_contract_fields_and_types(store: Store) -> None:
    # Given a job created from a spec
    given = spec(priority=7, labels={"team": "a"}, callback_url="https://example.com/hook")
    store.create("job-1", given, producer="api", fingerprint="f")
    # When its public record is read
    record = store.get("job-1")
    assert record is not None
    data = record.model_dump(mode="json")
    # Then it has exactly the docs/design.md §6 fields, with the right types and initial values
    assert set(data) == RECORD_FIELDS
    assert data["id"] == "job-1"
    assert data["state"] == "queued"
    assert (data["provider"], data["model"]) == ("sim", "cogvideox-flash")
    assert data["spec"] == given.model_dump(mode="json", exclude_none=True)
    assert (data["attempts"], data["polls"]) == (0, 0)
    assert isinstance(data["created_at"], str)
    assert ISO_UTC_MICROS.match(data["created_at"])
    for unset in ("provider_task_id", "submitted_at", "provider_finished_at", "completed_at"):
        assert data[unset] is None
    assert data["error"] is None
    assert data["result"] is None


def test_record_timestamps_are_iso_utc_with_microseconds(store: Store) -> None:
    # Given a job that went all the way to succeeded
    job_in(store, "job-1", State.SUCCEEDED)
    # Then every timestamp the store itself wrote (record and timeline) has the contract shape
    record = store.get("job-1")
    assert record is not None
    assert ISO_UTC_MICROS.match(record.created_at)
    assert all(ISO_UTC_MICROS.match(e["at"]) for e in store.events("job-1"))


def test_create_in_a_pipeline_stores_the_job_when_the_pipeline_runs(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given two creates queued in one pipeline
    pipe = redis_db.pipeline(transaction=False)
    assert store.create("job-1", spec(), pipe=pipe) is None
    assert store.create("job-2", spec(), pipe=pipe) is None
    assert store.get("job-1") is None
    # When the pipeline runs
    pipe.execute()
    # Then both jobs are queued, in FIFO order
    assert redis_db.zrange(keys.waiting("sim"), 0, -1) == [b"job-1", b"job-2"]


def test_an_idempotency_key_returns_the_existing_job_and_creates_nothing(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a job created with an idempotency key
    assert store.create("job-1", spec(idempotency_key="order-42")) == ("job-1", True)
    # When another job is created with the same key
    again = store.create("job-2", spec(idempotency_key="order-42", prompt="other"))
    # Then the first job's id comes back, and the second job exists nowhere
    assert again == ("job-1", False)
    assert store.get("job-2") is None
    assert redis_db.exists(keys.events("job-2")) == 0
    assert redis_db.zcard(keys.waiting("sim")) == 1
    assert redis_db.zcard(keys.all_jobs()) == 1
    assert redis_db.smembers(keys.by_state(State.QUEUED)) == {b"job-1"}
    assert redis_db.get(keys.sequence()) == b"1"
    # And the key is kept as long as a finished record
    ttl = redis_db.ttl(keys.idempotency("order-42"))
    assert keys.IDEMPOTENCY_TTL_S - 5 <= ttl <= keys.IDEMPOTENCY_TTL_S


def test_different_idempotency_keys_create_different_jobs(store: Store) -> None:
    assert store.create("job-1", spec(idempotency_key="a")) == ("job-1", True)
    assert store.create("job-2", spec(idempotency_key="b")) == ("job-2", True)


# -- claim ---------------------------------------------------------------------------------


def test_claiming_in_a_wrong_state_is_refused_with_the_current_state(store: Store) -> None:
    store.create("job-1", spec())
    claim = store.claim("job-1", [State.RUNNING], lease_s=30)
    assert (claim.ok, claim.state, claim.row) == (False, State.QUEUED, None)


def test_claiming_a_missing_job_is_refused(store: Store) -> None:
    claim = store.claim("ghost", [State.RUNNING], lease_s=30)
    assert (claim.ok, claim.state, claim.row) == (False, None, None)


def test_claiming_a_step_scheduled_beyond_the_tolerance_is_refused_as_not_yet_due(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a running job whose next poll is 10 s away
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, step_s=10)
    before = snapshot(redis_db, "job-1")
    # When the step is claimed now
    script = redis_db.register_script(store_scripts.CLAIM)
    answer = script(
        keys=[keys.job("job-1"), keys.due()],
        args=["job-1", ",running,", 30_000, 30_500, CLAIM_TOLERANCE_MS],
    )
    # Then the script answers "not yet due" (-1) and leaves the schedule alone
    assert answer == [-1, b"running"]
    assert snapshot(redis_db, "job-1") == before
    assert not store.claim("job-1", [State.RUNNING], lease_s=30).ok


def test_claiming_a_due_step_takes_it_so_a_duplicate_is_refused(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a running job whose poll is due now
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, step_s=0)
    # When the poll is claimed
    earliest = redis_now_ms(redis_db)
    first = store.claim("job-1", [State.RUNNING], lease_s=30)
    latest = redis_now_ms(redis_db)
    # Then it is taken, with the job's row, for the lease, and due again after lease + grace
    assert first.ok
    assert first.state == State.RUNNING
    assert first.row is not None
    assert (first.row.id, first.row.state) == ("job-1", State.RUNNING)
    step_until = int(store.fields("job-1")["step_until"])
    assert earliest + 30_000 <= step_until <= latest + 30_000
    due = redis_db.zscore(keys.due(), "job-1")
    assert due is not None
    assert earliest + 30_000 + GRACE_S * 1000 <= due <= latest + 30_000 + GRACE_S * 1000
    # And a duplicate copy of the same step, claiming right after, is refused
    second = store.claim("job-1", [State.RUNNING], lease_s=30)
    assert (second.ok, second.state) == (False, "running")


def test_claiming_a_step_within_the_tolerance_window_succeeds(store: Store) -> None:
    # Given a running job whose next poll is a bit less than the tolerance away
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, step_s=CLAIM_TOLERANCE_MS / 1000 - 0.3)
    # When it is claimed now (a worker clock slightly ahead of Redis)
    claim = store.claim("job-1", [State.RUNNING], lease_s=30)
    # Then it is taken
    assert claim.ok


def test_claim_accepts_any_of_the_allowed_states(store: Store) -> None:
    job_in(store, "job-1", State.SUBMITTING)
    claim = store.claim("job-1", [State.QUEUED, State.SUBMITTING], lease_s=30)
    assert (claim.ok, claim.state) == (True, "submitting")


# -- reading -------------------------------------------------------------------------------


def test_count_by_state_counts_every_state(store: Store) -> None:
    job_in(store, "job-1", State.RUNNING)
    job_in(store, "job-2", State.RUNNING)
    job_in(store, "job-3", State.QUEUED)
    counts = store.count_by_state()
    assert set(counts) == {str(s) for s in State}
    assert (counts["running"], counts["queued"], counts["succeeded"]) == (2, 1, 0)


def test_an_expired_finished_record_leaves_the_indexes(store: Store, redis_db: redis.Redis) -> None:
    # Given a cancelled job
    job_in(store, "job-1", State.CANCELLED)
    # When its record's TTL runs out (shortened here from RECORD_TTL_S)
    redis_db.pexpire(keys.job("job-1"), 1)
    redis_db.pexpire(keys.events("job-1"), 1)
    time.sleep(0.05)
    assert store.get("job-1") is None
    # Then the next pruning (the sweep runs it) stops counting and listing it
    assert store.prune_expired(ttl_s=0) == 1
    assert store.count_by_state()["cancelled"] == 0
    assert redis_db.zscore(keys.all_jobs(), "job-1") is None
