"""Opt-in reuse of a finished result, on the unit tier's Redis: the CREATE script's lookup (a
success of the same generation, mirrored, within the window, still in Redis), the job it makes,
and the spec's validation. End to end through the API: tests/integration/test_reuse_api.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from producer.batch import new_jobs
from producer.history import History
from producer.validation import parse_spec
from workers.domain.change import Change
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import JobRecord, JobSpec, State, now_iso
from workers.domain.reuse import generation_digest
from workers.io.archive import Archived
from workers.redis import keys
from workers.redis.enqueue import Created, Creator
from workers.redis.records import JobRecords
from workers.redis.reuse import ReuseIndex
from workers.redis.store import Store

SHA = "ab" * 32
BASE: dict[str, Any] = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a red kite"}


def _create(client: redis.Redis, data: dict[str, Any], producer: str = "p") -> tuple[str, Created]:
    [job] = new_jobs([JobSpec.model_validate(data)], producer)
    created = Creator(client).create([job], producer=producer)
    assert created is not None
    return created.existing.get(0, job.job_id), created


def _end(client: redis.Redis, job_id: str, to: State = State.SUCCEEDED) -> None:
    """Bring a queued job to ``to`` through allowed transitions, with its files when it
    succeeds, and register it as the mirror does."""
    store = Store(client)
    path = [State.SUBMITTING, State.RUNNING, State.MIRRORING]
    before = State.QUEUED
    for state in path if to == State.SUCCEEDED else path[:2]:
        assert store.transition(job_id, [before], state)
        before = state
    result = {
        name: {"bucket": "vq", "key": f"videos/{job_id}/{name}.mp4", "size": 7, "sha256": SHA,
               "content_type": "video/mp4"}
        for name in ("video", "cover")
    }  # fmt: skip
    change = Change(result=result, completed_at=now_iso()) if to == State.SUCCEEDED else None
    assert store.transition(job_id, [before], to, change=change)
    row = store.row(job_id)
    assert row is not None
    ReuseIndex(client).register(job_id, row.spec)


def test_an_identical_spec_asking_for_reuse_takes_the_finished_result(
    redis_db: redis.Redis,
) -> None:
    # Given a job that succeeded (without asking anything)
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    # When an identical spec asks for reuse within 10 minutes, with other labels and priority
    asked = {**BASE, "reuse_within_s": 600, "labels": {"team": "b"}, "priority": 5}
    second, created = _create(redis_db, asked, producer="q")
    # Then it is a new job, created succeeded, pointing at the same objects
    assert second != first and created.reused == {0: second}
    store = Store(redis_db)
    original, reused = store.get(first), store.get(second)
    assert original is not None and reused is not None
    assert (reused.state, reused.reused_from, reused.result) == (
        State.SUCCEEDED,
        first,
        original.result,
    )
    assert reused.completed_at == reused.created_at and reused.provider_task_id is None
    assert reused.spec["labels"] == {"team": "b"} and reused.spec["reuse_within_s"] == 600
    # And it never waits for a slot; it is counted, listed and expires like any finished job
    assert not redis_db.zrange(keys.waiting("zhipu", "q"), 0, -1)
    assert redis_db.sismember(keys.by_state(State.SUCCEEDED), second)
    assert not redis_db.sismember(keys.by_state(State.QUEUED), second)
    assert redis_db.zscore(keys.by_producer("q"), second) is not None
    assert redis_db.ttl(keys.job(second)) > 0 and not redis_db.exists(keys.events(second))
    assert ReuseIndex(redis_db).reused() == {"zhipu": 1}
    assert store.events(second)[-1]["event"] == f"reused the result of {first}"
    # And a purge of the reusing job finds no files of its own to delete; the original knows
    # that another record shares its files
    assert "result" not in store.fields(second)
    assert store.fields(first)["reused"] == "1"
    records = JobRecords(redis_db)
    assert records.finished(second).files == []


def test_a_purge_keeps_files_that_another_job_reused(redis_db: redis.Redis) -> None:
    # Given an original whose result another job took, and a success nobody reused
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    _create(redis_db, {**BASE, "reuse_within_s": 600})
    alone, _ = _create(redis_db, {**BASE, "prompt": "a blue kite"})
    _end(redis_db, alone)
    records = JobRecords(redis_db)
    # When each is cleared for purging
    shared, own = records.finished(first), records.finished(alone)
    # Then the original's files stay for the job that points at them; the other's go, named
    # by their whole keys
    assert shared.files == []
    assert [item["key"] for item in own.files] == [
        f"videos/{alone}/video.mp4",
        f"videos/{alone}/cover.mp4",
    ]
    # And the purge still removes the original's record
    records.purge(shared)
    assert Store(redis_db).get(first) is None


def test_an_archived_reusing_job_is_purged_without_the_originals_files() -> None:
    # Given the archived records of an original and of a job that reused its result
    files = {"video": {"bucket": "vq", "key": "videos/o/video.mp4", "size": 7, "sha256": SHA}}
    made = {"provider": "zhipu", "model": "m", "spec": BASE, "created_at": now_iso()}
    original = JobRecord.model_validate({**made, "id": "o", "state": "succeeded",
                                         "result": files})  # fmt: skip
    reusing = original.model_copy(update={"id": "r", "reused_from": "o"})
    deleted: list[tuple[list[dict[str, Any]], str]] = []

    class S3:
        storage = None

        def call(self, _fn: Any, _storage: Any, items: list[dict[str, Any]], job_id: str) -> None:
            deleted.append((items, job_id))

    history = History.__new__(History)
    history.s3 = S3()  # type: ignore[assignment]
    # When both are purged from the archive
    history.purge(Archived(reusing, "p", []))
    history.purge(Archived(original, "p", []))
    # Then the reusing job's purge deletes its record only; the original's, its files too
    assert deleted == [([], "r"), ([files["video"]], "o")]


@pytest.mark.parametrize(
    ("later", "why"),
    [
        ({**BASE}, "not asked"),
        ({**BASE, "seed": 7, "reuse_within_s": 600}, "a generation field differs"),
        ({**BASE, "prompt": "a blue kite", "reuse_within_s": 600}, "another prompt"),
        ({**BASE, "model": "cogvideox-3", "reuse_within_s": 600}, "another model"),
        ({**BASE, "options": {"user_id": "u"}, "reuse_within_s": 600}, "other options"),
    ],
)
def test_no_reuse_unless_asked_for_the_same_generation(
    redis_db: redis.Redis, later: dict[str, Any], why: str
) -> None:
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    second, created = _create(redis_db, later)
    assert not created.reused, why
    assert Store(redis_db).fields(second)["state"] == "queued"


def test_a_handling_field_does_not_make_another_generation() -> None:
    one = JobSpec.model_validate(BASE)
    other = JobSpec.model_validate(
        {
            **dict(reversed(list(BASE.items()))),
            "labels": {"a": "b"},
            "priority": 9,
            "callback_url": "https://example.com/h",
            "idempotency_key": "k",
            "reuse_within_s": 5,
            "options": {},
        }
    )
    assert generation_digest(one) == generation_digest(other)
    assert generation_digest(one) != generation_digest(one.model_copy(update={"seed": 1}))


def test_a_failed_job_is_never_reused(redis_db: redis.Redis) -> None:
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first, State.FAILED)
    assert redis_db.get(keys.reuse(generation_digest(JobSpec.model_validate(BASE)))) is None
    _, created = _create(redis_db, {**BASE, "reuse_within_s": 600})
    assert not created.reused


def test_a_success_outside_the_window_is_not_reused(redis_db: redis.Redis) -> None:
    # Given a success registered 120 s ago
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    entry = keys.reuse(generation_digest(JobSpec.model_validate(BASE)))
    seconds = int(redis_db.get(entry).split(b"/")[0])  # type: ignore[union-attr]
    redis_db.set(entry, f"{seconds - 120}/{first}")
    # Then a window of 60 s does not reach it, and one of 300 s does
    _, narrow = _create(redis_db, {**BASE, "reuse_within_s": 60})
    _, wide = _create(redis_db, {**BASE, "reuse_within_s": 300})
    assert (narrow.reused, list(wide.reused)) == ({}, [0])


def test_a_purged_original_is_not_reused(redis_db: redis.Redis) -> None:
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    redis_db.delete(keys.job(first))  # its record was purged (or archived)
    _, created = _create(redis_db, {**BASE, "reuse_within_s": 600})
    assert not created.reused


def test_a_reusing_job_with_a_webhook_is_due_for_it(redis_db: redis.Redis) -> None:
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    hooked = {**BASE, "reuse_within_s": 600, "callback_url": "https://example.com/hook"}
    second, created = _create(redis_db, hooked)
    assert created.reused == {0: second}
    row = Store(redis_db).row(second)
    assert row is not None and row.notify is not None and row.notify.value == "pending"
    assert redis_db.zscore(keys.due(), second) is not None  # a due poller sends it


def test_a_batch_reuses_job_by_job(redis_db: redis.Redis) -> None:
    first, _ = _create(redis_db, BASE)
    _end(redis_db, first)
    specs = [JobSpec.model_validate({**BASE, "reuse_within_s": 60}), JobSpec.model_validate(BASE)]
    jobs = new_jobs(specs, "p")
    created = Creator(redis_db).create(jobs, producer="p")
    assert created is not None
    assert created.reused == {0: jobs[0].job_id} and created.existing == {0: jobs[0].job_id}
    assert json.loads(Store(redis_db).fields(jobs[1].job_id)["spec"]) == {"p": "a red kite"}


@pytest.mark.parametrize("value", ["60", 0, -5, 86_401, True, 1.5, None])
def test_reuse_within_s_is_a_positive_whole_number_of_seconds_up_to_a_day(value: Any) -> None:
    if value is None:
        assert parse_spec({**BASE, "reuse_within_s": None}).reuse_within_s is None
        return
    with pytest.raises(InvalidSpec) as refused:
        parse_spec({**BASE, "reuse_within_s": value})
    assert refused.value.field == "reuse_within_s"
