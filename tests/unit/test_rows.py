"""Typed rows and changes against a real Redis: a ``Change`` writes the hash layout's strings,
a ``JobRow`` reads them back typed, and its record is the public one."""

from __future__ import annotations

import json

import pytest
import redis

from tests.support.storing import GRACE_S, job_in, spec
from workers.domain.change import Change
from workers.domain.jobs import JobError, State
from workers.domain.row import JobRow, Notify, PollMode
from workers.redis.store import Store, record_from


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db, grace_s=GRACE_S)


# -- typed changes and rows ----------------------------------------------------------------

EVERY_CHANGE = Change(
    error=JobError(code="c", message="m", retryable=True),
    result={"video": {"key": "k", "size": 3}},
    completed_at="2026-01-02T03:04:05.000006Z",
    submitted_at="2026-01-02T03:04:00.000000Z",
    provider_finished_at="2026-01-02T03:04:04.000000Z",
    at_provider=True,
    cancel_requested=True,
    notify=Notify.PENDING,
    poll_mode=PollMode.STEADY,
    video_url="https://media.test/v.mp4",
    cover_url="https://media.test/c.png",
    provider_task_id="t-1",
    task_extra={"family": "x"},
    deadline_ms=1234,
    key_id="KEY_A",
)


def test_a_change_writes_the_hash_layout_strings(store: Store) -> None:
    # Given a running job
    job_in(store, "job-1", State.RUNNING)
    # When every field a change can hold is written
    assert store.transition("job-1", [State.RUNNING], None, change=EVERY_CHANGE)
    # Then the hash holds them as it always has: flags "1", JSON for models and mappings
    fields = store.fields("job-1")
    assert fields["error"] == '{"code":"c","message":"m","retryable":true}'
    assert fields["result"] == json.dumps({"video": {"key": "k", "size": 3}})
    assert (fields["at_provider"], fields["cancel_requested"]) == ("1", "1")
    assert (fields["notify"], fields["poll_mode"]) == ("pending", "steady")
    assert (fields["provider_task_id"], fields["task_extra"]) == ("t-1", '{"family": "x"}')
    assert (fields["deadline_ms"], fields["key_id"]) == ("1234", "KEY_A")
    assert fields["completed_at"] == "2026-01-02T03:04:05.000006Z"
    # When the flags and optional fields are cleared (False / None), then they are gone
    cleared = Change(at_provider=False, error=None, notify=None, video_url=None, key_id=None)
    assert store.transition("job-1", [State.RUNNING], None, change=cleared)
    after = store.fields("job-1")
    assert not {"at_provider", "error", "notify", "video_url", "key_id"} & set(after)
    # And a change leaves everything it does not name alone
    assert after["cover_url"] == "https://media.test/c.png"
    assert Change().hash_args() == []


def test_a_row_reads_the_hash_as_typed_values(store: Store) -> None:
    # Given a running job with every internal field set
    job_in(store, "job-1", State.RUNNING)
    store.transition("job-1", [State.RUNNING], None, change=EVERY_CHANGE, incr="polls")
    # When its row is read
    row = store.row("job-1")
    # Then ints are ints, flags bools, enums enums, unset fields None, and the spec is parsed
    assert row is not None
    assert (row.id, row.state, row.provider, row.model) == (
        "job-1",
        State.RUNNING,
        "sim",
        "cogvideox-flash",
    )
    assert (row.polls, row.attempts, row.mirror_attempts, row.deadline_ms) == (1, 0, 0, 1234)
    assert (row.at_provider, row.cancel_requested) == (True, True)
    assert (row.notify, row.poll_mode) == (Notify.PENDING, PollMode.STEADY)
    assert (row.provider_task_id, dict(row.task_extra)) == ("t-1", {"family": "x"})
    assert row.slot_key_id == "KEY_A"
    assert row.error == JobError(code="c", message="m", retryable=True)
    assert row.spec == spec()
    assert row.callback_url is None
    assert store.row("ghost") is None


def test_a_rows_record_is_the_public_record(store: Store) -> None:
    # Given a finished job with a callback, an error and a result
    store.create("job-1", spec(callback_url="https://example.com/hook"))
    store.transition("job-1", [State.QUEUED], State.FAILED, change=EVERY_CHANGE)
    # Then its row gives the same record as the record readers (record_from, Store.get)
    row = store.row("job-1")
    assert row is not None
    assert row.record() == record_from(store.fields("job-1")) == store.get("job-1")
    assert row.callback_url == "https://example.com/hook"


def test_a_row_missing_its_slot_key_says_so() -> None:
    row = JobRow("j", State.RUNNING, "sim", "m", "2026-01-01T00:00:00.000000Z", "{}")
    with pytest.raises(KeyError, match="holds no slot"):
        _ = row.slot_key_id
