"""The job store against a real Redis: records, indexes, and the CREATE/TRANSITION/CLAIM Lua.

Every time the scripts write is Redis ``TIME``; the tests read the same clock
(``redis_now_ms``) to bound what they expect.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import deque
from typing import Any

import pytest
import redis

from workers.domain.jobs import NEXT, TERMINAL, JobSpec, State
from workers.redis import keys, store_scripts
from workers.redis.store import CLAIM_TOLERANCE_MS, Store

GRACE_S = 0.5
ISO_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
RECORD_FIELDS = {
    "id",
    "state",
    "provider",
    "model",
    "spec",
    "provider_task_id",
    "attempts",
    "polls",
    "created_at",
    "submitted_at",
    "provider_finished_at",
    "completed_at",
    "error",
    "result",
}
ALLOWED_PAIRS = [(a, b) for a in State for b in sorted(NEXT[a])]


def spec(**overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {"provider": "sim", "model": "cogvideox-flash", "prompt": "a boat"}
    return JobSpec.model_validate({**fields, **overrides})


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def path_to(state: State) -> list[State]:
    """The shortest chain of allowed transitions from queued to ``state``."""
    paths = deque([[State.QUEUED]])
    while paths:
        path = paths.popleft()
        if path[-1] == state:
            return path
        paths.extend([*path, nxt] for nxt in sorted(NEXT[path[-1]]) if nxt not in path)
    raise AssertionError(f"{state} cannot be reached from queued")


def job_in(store: Store, job_id: str, state: State) -> None:
    """A job brought to ``state`` through allowed transitions only."""
    assert store.create(job_id, spec()) == (job_id, True)
    path = path_to(state)
    for before, after in itertools.pairwise(path):
        assert store.transition(job_id, [before], after)


def snapshot(client: redis.Redis, job_id: str) -> dict[str, Any]:
    """Everything a transition may touch, to check that a refused one touched nothing."""
    return {
        "hash": client.hgetall(keys.job(job_id)),
        "events": client.lrange(keys.events(job_id), 0, -1),
        "due": client.zscore(keys.due(), job_id),
        "states": {s: client.sismember(keys.by_state(s), job_id) for s in State},
        "expires": (client.ttl(keys.job(job_id)) != -1, client.ttl(keys.events(job_id)) != -1),
    }


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


# -- transition ----------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), ALLOWED_PAIRS, ids=lambda s: str(s))
def test_every_allowed_transition_succeeds_and_moves_the_state_sets(
    store: Store, redis_db: redis.Redis, before: State, after: State
) -> None:
    # Given a job in `before`
    job_in(store, "job-1", before)
    # When it moves to `after`
    moved = store.transition("job-1", [before], after, event="moved")
    # Then it did, and the state sets moved with it
    assert moved
    assert store.fields("job-1")["state"] == after
    assert {s for s in State if redis_db.sismember(keys.by_state(s), "job-1")} == {after}
    assert store.events("job-1")[-1]["state"] == after


@pytest.mark.parametrize("current", list(State), ids=str)
def test_a_transition_from_a_state_not_allowed_is_refused_and_changes_nothing(
    store: Store, redis_db: redis.Redis, current: State
) -> None:
    # Given a job in `current`, scheduled, and a transition that expects another state
    job_in(store, "job-1", current)
    store.transition("job-1", [current], None, step_s=30)
    expected = State.QUEUED if current != State.QUEUED else State.SUBMITTING
    target = next(iter(NEXT[expected]))
    before = snapshot(redis_db, "job-1")
    # When it is attempted with fields, a counter, a schedule and an event
    moved = store.transition(
        "job-1",
        [expected],
        target,
        step_s=5,
        fields={"error": "x", "provider_task_id": ""},
        incr="attempts",
        event="should not happen",
    )
    # Then it is refused, and the hash, indexes, schedule, timeline and TTLs are untouched
    assert not moved
    assert snapshot(redis_db, "job-1") == before


def test_a_transition_of_a_missing_job_is_refused_and_creates_nothing(
    store: Store, redis_db: redis.Redis
) -> None:
    moved = store.transition("ghost", [State.QUEUED], State.SUBMITTING, step_s=1, event="x")
    assert not moved
    assert redis_db.keys("*") == []


@pytest.mark.parametrize("terminal", sorted(TERMINAL), ids=str)
def test_a_terminal_transition_sets_the_record_ttl_and_drops_the_schedule(
    store: Store, redis_db: redis.Redis, terminal: State
) -> None:
    # Given a job one step from `terminal`, with a scheduled next step
    before = next(s for s in (State.MIRRORING, State.RUNNING, State.QUEUED) if terminal in NEXT[s])
    job_in(store, "job-1", before)
    store.transition("job-1", [before], None, step_s=30)
    assert redis_db.zscore(keys.due(), "job-1") is not None
    assert redis_db.ttl(keys.job("job-1")) == -1
    # When it ends
    assert store.transition("job-1", [before], terminal, event="end")
    # Then its record and timeline expire after RECORD_TTL_S, and it is no longer due
    for key in (keys.job("job-1"), keys.events("job-1")):
        assert keys.RECORD_TTL_S - 5 <= redis_db.ttl(key) <= keys.RECORD_TTL_S
    assert redis_db.zscore(keys.due(), "job-1") is None
    assert "step_until" not in store.fields("job-1")


def test_a_terminal_transition_with_a_next_step_keeps_it_due(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a running job (its webhook is still to be sent when it fails)
    job_in(store, "job-1", State.RUNNING)
    # When it fails with a step scheduled now
    assert store.transition("job-1", [State.RUNNING], State.FAILED, step_s=0)
    # Then the record expires later, but the step stays due
    assert redis_db.ttl(keys.job("job-1")) > 0
    assert redis_db.zscore(keys.due(), "job-1") is not None


def test_a_non_terminal_transition_sets_no_ttl(store: Store, redis_db: redis.Redis) -> None:
    job_in(store, "job-1", State.RUNNING)
    assert redis_db.ttl(keys.job("job-1")) == -1
    assert redis_db.ttl(keys.events("job-1")) == -1


def test_a_disallowed_pair_fails_in_python_before_reaching_redis(store: Store) -> None:
    # Given a succeeded job, and a store whose script would record any call
    job_in(store, "job-1", State.MIRRORING)
    store.transition("job-1", [State.MIRRORING], State.SUCCEEDED)
    calls: list[Any] = []
    store._transition = lambda **kwargs: calls.append(kwargs)  # type: ignore[assignment]
    # When it is asked to go back to running
    with pytest.raises(AssertionError, match="not allowed"):
        store.transition("job-1", [State.SUCCEEDED], State.RUNNING)
    # Then the script was never called
    assert calls == []
    assert store.fields("job-1")["state"] == State.SUCCEEDED


def test_a_same_state_update_keeps_the_state_and_its_set(
    store: Store, redis_db: redis.Redis
) -> None:
    job_in(store, "job-1", State.RUNNING)
    assert store.transition("job-1", [State.RUNNING], None, fields={"provider_task_id": "t1"})
    assert store.fields("job-1")["state"] == State.RUNNING
    assert store.fields("job-1")["provider_task_id"] == "t1"
    assert redis_db.smembers(keys.by_state(State.RUNNING)) == {b"job-1"}


def test_incr_increments_the_named_counter(store: Store) -> None:
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, incr="polls")
    store.transition("job-1", [State.RUNNING], None, incr="polls")
    record = store.get("job-1")
    assert record is not None
    assert record.polls == 2


def test_a_field_with_an_empty_value_is_deleted(store: Store) -> None:
    # Given a job with an error and a provider task id
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, fields={"error": "e", "at_provider": "1"})
    # When the error is written empty
    store.transition("job-1", [State.RUNNING], None, fields={"error": ""})
    # Then the field is gone, and the others stay
    fields = store.fields("job-1")
    assert "error" not in fields
    assert fields["at_provider"] == "1"


def test_step_s_schedules_the_step_and_its_due_time_by_redis_time(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a running job
    job_in(store, "job-1", State.RUNNING)
    # When its next step is scheduled 5 s from now
    earliest = redis_now_ms(redis_db)
    store.transition("job-1", [State.RUNNING], None, step_s=5)
    latest = redis_now_ms(redis_db)
    # Then step_until is now + 5 s, it is due (to be published by a due poller) at the same
    # time, and it is not marked sent
    fields = store.fields("job-1")
    step_until = int(fields["step_until"])
    assert earliest + 5000 <= step_until <= latest + 5000
    assert redis_db.zscore(keys.due(), "job-1") == step_until
    assert "sent" not in fields


def test_step_s_0_marks_the_step_sent_and_due_for_a_check_after_the_grace(
    store: Store, redis_db: redis.Redis
) -> None:
    # Given a running job
    job_in(store, "job-1", State.RUNNING)
    # When its next step is published right away (step_s=0)
    earliest = redis_now_ms(redis_db)
    store.transition("job-1", [State.RUNNING], None, step_s=0)
    latest = redis_now_ms(redis_db)
    # Then it is marked sent now, claimable now, and due for a check after the grace
    fields = store.fields("job-1")
    assert earliest <= int(fields["sent"]) <= latest
    assert int(fields["step_until"]) == int(fields["sent"])
    due = redis_db.zscore(keys.due(), "job-1")
    assert due is not None
    assert earliest + GRACE_S * 1000 <= due <= latest + GRACE_S * 1000
    # And a claim clears the mark (the message arrived)
    assert store.claim("job-1", [State.RUNNING], lease_s=10).ok
    assert "sent" not in store.fields("job-1")


def test_clear_step_drops_the_schedule(store: Store, redis_db: redis.Redis) -> None:
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, step_s=5)
    store.transition("job-1", [State.RUNNING], None, clear_step=True)
    assert "step_until" not in store.fields("job-1")
    assert redis_db.zscore(keys.due(), "job-1") is None


def test_events_are_capped_at_events_max_keeping_the_newest(store: Store) -> None:
    # Given a job
    store.create("job-1", spec())
    # When many more events than the cap are written
    for n in range(keys.EVENTS_MAX + 50):
        store.transition("job-1", [State.QUEUED], None, event=f"e{n}")
    # Then only the newest EVENTS_MAX are kept
    events = store.events("job-1")
    assert len(events) == keys.EVENTS_MAX
    assert events[0]["event"] == "e50"
    assert events[-1]["event"] == f"e{keys.EVENTS_MAX + 49}"


def test_a_transition_without_state_change_or_event_writes_no_event(store: Store) -> None:
    store.create("job-1", spec())
    store.transition("job-1", [State.QUEUED], None, fields={"provider_task_id": "t"})
    assert len(store.events("job-1")) == 1


def race(store: Store, job_id: str, targets: tuple[State, ...]) -> dict[State, bool]:
    """One thread per target state, all released at once into the same CAS."""
    barrier = threading.Barrier(len(targets), timeout=10)
    results: dict[State, bool] = {}

    def attempt(to: State) -> None:
        barrier.wait()
        results[to] = store.transition(job_id, [State.QUEUED], to, incr="attempts")

    threads = [threading.Thread(target=attempt, args=(to,)) for to in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_transitions_have_exactly_one_winner(store: Store, redis_db: redis.Redis) -> None:
    targets = (State.SUBMITTING, State.CANCELLED)
    for n in range(50):
        # Given a queued job
        job_id = f"job-{n}"
        store.create(job_id, spec())
        # When two threads race it to different next states
        results = race(store, job_id, targets)
        # Then exactly one wins, and the record and state sets agree with the winner
        winners = [to for to in targets if results[to]]
        assert len(winners) == 1, results
        assert store.fields(job_id)["state"] == winners[0]
        assert store.fields(job_id)["attempts"] == "1"
        member_of = {s for s in State if redis_db.sismember(keys.by_state(s), job_id)}
        assert member_of == {winners[0]}


# -- claim ---------------------------------------------------------------------------------


def test_claiming_in_a_wrong_state_is_refused_with_the_current_state(store: Store) -> None:
    store.create("job-1", spec())
    claim = store.claim("job-1", [State.RUNNING], lease_s=30)
    assert (claim.ok, claim.state, claim.fields) == (False, "queued", {})


def test_claiming_a_missing_job_is_refused(store: Store) -> None:
    claim = store.claim("ghost", [State.RUNNING], lease_s=30)
    assert (claim.ok, claim.state) == (False, "")


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
    # Then it is taken, with the job's fields, for the lease, and due again after lease + grace
    assert first.ok
    assert first.state == "running"
    assert first.fields["id"] == "job-1"
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
