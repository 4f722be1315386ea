"""Transitions against a real Redis: the compare-and-set TRANSITION Lua, its schedule, its
timeline, and the rule (``jobs.NEXT``) checked in Python before Redis is touched."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
import redis

from tests.support.storing import GRACE_S, job_in, redis_now_ms, snapshot, spec
from workers.domain.change import Change
from workers.domain.errors import TransitionNotAllowed
from workers.domain.jobs import NEXT, TERMINAL, JobError, State
from workers.redis import keys
from workers.redis.store import Store

ALLOWED_PAIRS = [(a, b) for a in State for b in sorted(NEXT[a])]


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db, grace_s=GRACE_S)


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
        change=Change(error=JobError(code="x", message="x"), provider_task_id=""),
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
    # Then its record (timeline included) expires after RECORD_TTL_S, and it is no longer due
    assert keys.RECORD_TTL_S - 5 <= redis_db.ttl(keys.job("job-1")) <= keys.RECORD_TTL_S
    assert not redis_db.exists(keys.events("job-1"))  # the timeline is a field of the hash
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
    assert not redis_db.exists(keys.events("job-1"))


def test_a_disallowed_pair_fails_in_python_before_reaching_redis(store: Store) -> None:
    # Given a succeeded job, and a store whose script would record any call
    job_in(store, "job-1", State.MIRRORING)
    store.transition("job-1", [State.MIRRORING], State.SUCCEEDED)
    calls: list[Any] = []
    store._transition = lambda **kwargs: calls.append(kwargs)  # type: ignore[assignment]
    # When it is asked to go back to running
    with pytest.raises(TransitionNotAllowed, match="not allowed"):
        store.transition("job-1", [State.SUCCEEDED], State.RUNNING)
    # Then the script was never called
    assert calls == []
    assert store.fields("job-1")["state"] == State.SUCCEEDED


def test_the_transition_rule_holds_under_python_O() -> None:
    # Given an interpreter that strips asserts (python -O)
    code = (
        "from workers.domain.errors import TransitionNotAllowed\n"
        "from workers.domain.jobs import State, check_transition\n"
        "try:\n"
        "    check_transition([State.SUCCEEDED], State.RUNNING)\n"
        "except TransitionNotAllowed as exc:\n"
        "    print('refused:', exc)\n"
    )
    # When a step asks for a move NEXT does not allow
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True)
    # Then it is still refused, with a message that names the move
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: transition succeeded -> running is not allowed")


def test_a_same_state_update_keeps_the_state_and_its_set(
    store: Store, redis_db: redis.Redis
) -> None:
    job_in(store, "job-1", State.RUNNING)
    assert store.transition("job-1", [State.RUNNING], None, change=Change(provider_task_id="t1"))
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
    error = JobError(code="e", message="e")
    store.transition("job-1", [State.RUNNING], None, change=Change(error=error, at_provider=True))
    # When the error is written as None
    store.transition("job-1", [State.RUNNING], None, change=Change(error=None))
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
    store.transition("job-1", [State.QUEUED], None, change=Change(provider_task_id="t"))
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
