"""The change streams on the unit tier's Redis: every creation and every state change of a job
lands once in its producer's stream, in the script that makes it (CREATE, TRANSITION), and in
no other producer's; the cap trims it; the reader (``workers.redis.changes``) parses, resumes
and blocks as the SSE routes need."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
from pydantic import ValidationError

from config.settings import Settings
from producer.batch import new_jobs
from tests.support.storing import spec
from tests.unit.test_reuse import BASE, _create, _end
from workers.domain.change import Change as FieldChange
from workers.domain.jobs import State
from workers.redis import changes, keys
from workers.redis.connect import connect_async
from workers.redis.enqueue import Creator
from workers.redis.store import Store

PATH = [State.QUEUED, State.SUBMITTING, State.RUNNING, State.MIRRORING, State.SUCCEEDED]


def _states(client: redis.Redis, producer: str, job_id: str) -> list[str]:
    return [c["state"] for c in changes.entries(client, producer) if c["id"] == job_id]


def _xadds(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_xadd", {}).get("calls", 0))


def test_every_state_change_lands_once_in_the_producers_stream(redis_db: redis.Redis) -> None:
    # Given a job created for team-a
    store = Store(redis_db)
    before = _xadds(redis_db)
    assert store.create("job-1", spec(), producer="team-a") == ("job-1", True)
    # When it moves along its path, with same-state updates and refused moves in between
    for previous, state in itertools.pairwise(PATH):
        assert store.transition("job-1", [previous], None, step_s=5, incr="polls")
        assert not store.transition("job-1", [State.SUBMIT_UNKNOWN], State.FAILED)
        assert store.transition("job-1", [previous], state)
    # Then the stream has each state once, in order, and nothing else: one XADD a change
    assert _states(redis_db, "team-a", "job-1") == [str(s) for s in PATH]
    added = _xadds(redis_db) - before
    print(f"XADD calls for one job's {len(PATH)} states: {added}")
    assert added == len(PATH)
    # And each entry names the job's provider and model, and when (Redis TIME)
    for entry in changes.entries(redis_db, "team-a"):
        assert (entry["provider"], entry["model"]) == ("sim", "cogvideox-flash")
        assert abs(entry["at"] - time.time()) < 60


def test_another_producers_stream_does_not_get_it(redis_db: redis.Redis) -> None:
    # Given a job of team-a and one of team-b, each moved to running and cancelled
    store = Store(redis_db)
    for job_id, producer in (("a-1", "team-a"), ("b-1", "team-b")):
        store.create(job_id, spec(), producer=producer)
        assert store.transition(job_id, [State.QUEUED], State.CANCELLED)
    # Then each stream holds its own producer's job only
    assert {c["id"] for c in changes.entries(redis_db, "team-a")} == {"a-1"}
    assert {c["id"] for c in changes.entries(redis_db, "team-b")} == {"b-1"}
    assert _states(redis_db, "team-b", "b-1") == ["queued", "cancelled"]
    assert redis_db.exists(keys.changes("team-c")) == 0


def test_a_batch_adds_one_entry_per_new_job_and_an_idempotent_repeat_none(
    redis_db: redis.Redis,
) -> None:
    # Given a batch of three jobs with idempotency keys
    specs = [spec(idempotency_key=f"k-{i}") for i in range(3)]
    jobs = new_jobs(specs, "team-a")
    Creator(redis_db).create(jobs, producer="team-a")
    # When the same keys come again (a retried batch)
    again = new_jobs(specs, "team-a")
    Creator(redis_db).create(again, producer="team-a")
    # Then the stream has one 'queued' per job, in batch order, and nothing for the repeat
    entries = changes.entries(redis_db, "team-a")
    assert [(c["id"], c["state"]) for c in entries] == [(j.job_id, "queued") for j in jobs]


def test_a_job_that_reuses_a_result_lands_as_succeeded(redis_db: redis.Redis) -> None:
    # Given a finished generation of producer p
    first, _ = _create(redis_db, {**BASE, "reuse_within_s": 600})
    _end(redis_db, first)
    # When an identical spec asking for reuse is created
    second, created = _create(redis_db, {**BASE, "reuse_within_s": 600})
    assert created.reused
    # Then its only entry is its creation as succeeded
    assert _states(redis_db, "p", second) == ["succeeded"]
    assert _states(redis_db, "p", first) == [str(s) for s in PATH]


def test_the_cap_trims_the_stream(redis_db: redis.Redis) -> None:
    # Given a store whose change streams are capped at 10 entries
    store = Store(redis_db, changes_maxlen=10)
    node: dict[str, str] = redis_db.config_get("stream-node-max-entries")  # type: ignore[assignment]
    slack = int(node["stream-node-max-entries"])
    # When 400 jobs are created and each is cancelled (800 changes)
    jobs = new_jobs([spec() for _ in range(400)], "team-a")
    Creator(redis_db, changes_maxlen=10).create(jobs, producer="team-a")
    for job in jobs:
        assert store.transition(job.job_id, [State.QUEUED], State.CANCELLED)
    # Then the stream kept about 10 (MAXLEN ~ trims whole nodes), the newest
    length = redis_db.xlen(keys.changes("team-a"))
    print(f"stream length after 800 changes, cap 10 (~, node {slack}): {length}")
    assert 10 <= length <= 10 + slack
    last = changes.entries(redis_db, "team-a")[-1]
    assert (last["id"], last["state"]) == (jobs[-1].job_id, "cancelled")


def test_a_job_of_an_earlier_version_without_a_producer_lands_in_the_anonymous_stream(
    redis_db: redis.Redis,
) -> None:
    # Given a job hash without the producer field (written before producers were kept)
    store = Store(redis_db)
    store.create("old-1", spec(), producer="x")
    redis_db.hdel(keys.job("old-1"), "producer")
    # When it moves
    assert store.transition("old-1", [State.QUEUED], State.CANCELLED)
    # Then the change is in the stream of the empty identity (no error, no lost change)
    assert _states(redis_db, "", "old-1") == ["cancelled"]


# -- the reader ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("1764640000000-0", "1764640000000-0"), (" 17 ", "17-0")]
)
def test_an_event_id_is_checked_and_completed(text: str, expected: str) -> None:
    assert changes.check_entry_id(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1-2-3", "-1", "1764640000000-x", "9" * 21])
def test_a_bad_event_id_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not an event id"):
        changes.check_entry_id(text)


def test_snapshot_read_and_between_follow_the_stream(redis_db: redis.Redis, redis_url: str) -> None:
    store = Store(redis_db)

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(f"{redis_url}/15")
        try:
            # Given an empty stream: its position is the beginning, no state
            empty = await changes.snapshot(client, "team-a", "job-1")
            assert (empty.last_id, empty.state, empty.trimmed) == (changes.BEGINNING, None, False)
            # When a job is created: the snapshot names its state and the entry's id
            store.create("job-1", spec(), producer="team-a")
            snap = await changes.snapshot(client, "team-a", "job-1")
            [created] = changes.entries(redis_db, "team-a")
            assert (snap.last_id, snap.state) == (created["event_id"], "queued")
            assert not snap.lost_after(changes.BEGINNING)
            # A blocking read after the snapshot waits, then returns the next change
            reader = asyncio.create_task(
                changes.read(client, "team-a", snap.last_id, block_ms=5000)
            )
            await asyncio.sleep(0.2)
            assert not reader.done()
            store.transition("job-1", [State.QUEUED], State.SUBMITTING)
            [moved] = await asyncio.wait_for(reader, 5)
            assert (moved["id"], moved["state"]) == ("job-1", "submitting")
            # between() replays a range, exclusive of its start
            assert await changes.between(client, "team-a", snap.last_id, moved["event_id"]) == [
                moved
            ]
            # A read that finds nothing within its block returns []
            assert await changes.read(client, "team-a", moved["event_id"], block_ms=50) == []
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_trimmed_stream_says_what_a_resume_lost(redis_db: redis.Redis, redis_url: str) -> None:
    # Given a stream capped at 10 that took 300 entries
    store = Store(redis_db, changes_maxlen=10)
    store.create("job-0", spec(), producer="team-a")
    first_id = changes.entries(redis_db, "team-a")[0]["event_id"]
    for i in range(1, 300):
        store.create(f"job-{i}", spec(), producer="team-a")

    async def scenario() -> changes.Snapshot:
        client = redis.asyncio.Redis.from_url(f"{redis_url}/15")
        try:
            return await changes.snapshot(client, "team-a")
        finally:
            await client.aclose()

    snap = asyncio.run(scenario())
    # Then a resume from the first entry lost some; one from the last kept did not
    assert snap.trimmed
    assert snap.lost_after(first_id)
    assert not snap.lost_after(snap.last_id)


def test_parse_takes_bytes_and_text() -> None:
    fields = {b"id": b"j", b"state": b"running", b"at": b"1.25", b"provider": b"p", b"model": b"m"}
    change = changes.parse(b"5-1", fields)
    assert change == changes.parse("5-1", {k.decode(): v.decode() for k, v in fields.items()})
    assert changes.data(change) == {
        "id": "j",
        "state": "running",
        "at": 1.25,
        "provider": "p",
        "model": "m",
    }


def test_a_field_change_without_a_move_adds_nothing(redis_db: redis.Redis) -> None:
    # Given a running job
    store = Store(redis_db)
    store.create("job-1", spec(), producer="team-a")
    store.transition("job-1", [State.QUEUED], State.SUBMITTING)
    store.transition("job-1", [State.SUBMITTING], State.RUNNING)
    count = redis_db.xlen(keys.changes("team-a"))
    # When a poll records its fields and a same-state "move" is asked
    store.transition("job-1", [State.RUNNING], None, change=FieldChange(provider_task_id="t-1"))
    store.transition("job-1", [State.RUNNING], State.RUNNING)
    # Then nothing was added
    assert redis_db.xlen(keys.changes("team-a")) == count


# -- the setting and the asyncio client ------------------------------------------------------


def test_the_cap_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().events_maxlen == keys.CHANGES_MAXLEN == 10_000
    monkeypatch.setenv("VIDQUEUE_EVENTS_MAXLEN", "500")
    assert Settings().events_maxlen == 500
    for bad in ("0", "99", "ten"):
        monkeypatch.setenv("VIDQUEUE_EVENTS_MAXLEN", bad)
        with pytest.raises(ValidationError, match="events_maxlen"):
            Settings()


def test_the_asyncio_client_follows_the_sync_builder(redis_url: str) -> None:
    # One server: the same URL and options
    plain = connect_async(Settings(redis_url=f"{redis_url}/15"), socket_timeout=42.0)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["socket_timeout"]) == (15, 42.0)
    # Sentinel: redis.asyncio's Sentinel pool for the named master and database
    url = "sentinel://:pw@10.0.0.1:26379;sentinel://10.0.0.2:26380/2"
    sentinel = connect_async(Settings(redis_url=url, redis_sentinel_master="vq-master"))
    pool = sentinel.connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert pool.service_name == "vq-master"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "pw"
    asked = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    hosts = [(options["host"], options["port"]) for options in asked]
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
