"""Due steps against a real Redis: scheduled steps wait in Redis until a due poller publishes
them, pollers racing never publish a step twice, and a step waiting in its queue is left alone
while a lost one is sent again.

Messages are published by a real Celery app into a database no worker consumes (db 15), so a
test sees exactly what sits in each queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from config.celery import make_app
from config.settings import Settings
from tests.support.sweeping import GRACE_S, KEY, catalogue, in_state, lease, redis_now_ms, spec
from workers.deps import Deps
from workers.domain.change import Change
from workers.domain.jobs import State
from workers.domain.messages import Step, send
from workers.redis import keys
from workers.redis.gate import Gate
from workers.redis.store import Store
from workers.steps.due import CLOCK_MARGIN_MS, due_steps, publish_due


def _deps(client: redis.Redis) -> Deps:
    return Deps(
        settings=Settings(),
        catalogue=catalogue(max_in_flight=1000),
        redis=client,
        store=Store(client, grace_s=GRACE_S),
        gate=Gate(client),
    )


@pytest.fixture
def deps(redis_db: redis.Redis) -> Deps:
    return _deps(redis_db)


@pytest.fixture
def app(redis_db: redis.Redis) -> Iterator[Celery]:
    """A real Celery app on the test database: what it publishes stays queued."""
    url = redis_db.connection_pool.connection_kwargs
    celery = make_app(Settings(redis_url=f"redis://127.0.0.1:{url['port']}/{url['db']}"))
    yield celery
    celery.close()


class Recorder:
    """Stands in for the Celery app: records what would be published, thread-safely."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def producer_or_acquire(self) -> Any:
        import contextlib

        return contextlib.nullcontext("producer")

    def send_task(self, name: str, *, args: list[str], **_: Any) -> None:
        with self._lock:
            self.sent.append((name, args[0]))


def running(d: Deps, job_id: str, *, poll_in_s: float) -> None:
    """A running job whose next poll is scheduled ``poll_in_s`` from now."""
    in_state(d, job_id, State.RUNNING)
    assert d.store.transition(job_id, [State.RUNNING], None, step_s=poll_in_s)


def backdate(d: Deps, job_id: str, ms: int = 60_000) -> None:
    """Move the job's due time ``ms`` into the past (as if that much time went by)."""
    d.redis.zadd(keys.due(), {job_id: redis_now_ms(d.redis) - ms})


# -- scheduled steps -----------------------------------------------------------------------


def test_a_scheduled_poll_is_published_only_when_it_falls_due(deps: Deps) -> None:
    # Given a running job whose next poll is due in 0.4 s
    running(deps, "job-1", poll_in_s=0.4)
    app = Recorder()
    # When a poller looks now, then nothing is published
    assert publish_due(deps, app) == 0
    assert app.sent == []
    # When it looks after the due time, then the poll is published once, as an immediate step
    time.sleep(0.5)
    assert publish_due(deps, app) == 1
    assert app.sent == [("vidqueue.poll", "job-1")]
    assert "sent" in deps.store.fields("job-1")
    # And the published poll can claim its step; a look right after publishes nothing more
    assert deps.store.claim("job-1", [State.RUNNING], lease_s=30).ok
    assert publish_due(deps, app) == 0
    assert app.sent == [("vidqueue.poll", "job-1")]


def test_a_step_scheduled_in_redis_is_no_message_anywhere(deps: Deps, app: Celery) -> None:
    # Given a poll scheduled 60 s ahead, returned by the step as the next step
    running(deps, "job-1", poll_in_s=60)
    # When the worker publishes the steps the step returned
    published = send(app, [Step("poll", "job-1", 60.0)])
    # Then no message exists for it (no countdown parked in a worker): it waits in Redis
    assert published == 0
    assert deps.redis.llen("poll") == 0
    assert deps.redis.zscore(keys.due(), "job-1") is not None


def test_two_pollers_racing_for_the_same_due_jobs_publish_each_once(
    redis_db: redis.Redis,
) -> None:
    # Given 400 running jobs whose polls are all due
    d = _deps(redis_db)
    for n in range(400):
        running(d, f"job-{n}", poll_in_s=0)
        backdate(d, f"job-{n}", 1)
    # When two pollers, each with its own Redis connection, take due jobs at the same time
    app = Recorder()
    kwargs = redis_db.connection_pool.connection_kwargs
    pollers = [_deps(redis.Redis(port=kwargs["port"], db=kwargs["db"])) for _ in range(2)]
    start = threading.Barrier(2)

    def drain(p: Deps) -> None:
        start.wait()
        for _ in range(20):
            publish_due(p, app, limit=25)

    threads = [threading.Thread(target=drain, args=(p,)) for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every poll was published exactly once
    assert len(app.sent) == 400
    assert sorted(job for _, job in app.sent) == sorted(f"job-{n}" for n in range(400))


# -- lost or only waiting ------------------------------------------------------------------


def _published(d: Deps, app: Celery, n: int) -> list[str]:
    """``n`` running jobs whose polls were published right away (no worker takes them)."""
    ids = [f"job-{i}" for i in range(n)]
    for job_id in ids:
        in_state(d, job_id, State.RUNNING)
        assert d.store.transition(job_id, [State.RUNNING], None, step_s=0)
    send(app, [Step("poll", job_id) for job_id in ids])
    return ids


def test_steps_waiting_in_their_queue_are_left_alone(deps: Deps, app: Celery) -> None:
    # Given 300 polls published into a queue that no worker consumes (a backlog)
    ids = _published(deps, app, 300)
    assert deps.redis.llen("poll") == 300
    # When the grace passes without any of them being claimed, and pollers look twice
    time.sleep(GRACE_S + 0.2)
    publish_due(deps, app)
    time.sleep(GRACE_S + 0.2)
    publish_due(deps, app)
    # Then nothing is re-sent: each message is still waiting, once
    assert deps.redis.llen("poll") == 300
    assert all(deps.redis.zscore(keys.due(), job_id) is not None for job_id in ids)
    assert not [e for e in deps.store.events("job-0") if "re-sent" in e["event"]]


def test_a_lost_message_is_sent_again_once(deps: Deps, app: Celery) -> None:
    # Given 20 polls published, then lost (the queue emptied without any being claimed)
    _published(deps, app, 20)
    deps.redis.delete("poll")
    # When the grace passes and a poller looks
    time.sleep(GRACE_S + 0.2)
    publish_due(deps, app)
    # Then each poll is in the queue again, once, and its timeline says why
    assert deps.redis.llen("poll") == 20
    assert deps.store.events("job-3")[-1]["event"] == "re-sent lost poll"
    # And a second look right away sends nothing more
    publish_due(deps, app)
    assert deps.redis.llen("poll") == 20


def test_a_lost_message_behind_a_newer_backlog_is_sent_again(deps: Deps, app: Celery) -> None:
    # Given a poll published, then lost, and later a backlog of newer messages in its queue
    _published(deps, app, 1)
    deps.redis.delete("poll")
    time.sleep(CLOCK_MARGIN_MS / 1000 + 0.2)
    send(app, [Step("poll", f"other-{n}") for n in range(5)])
    # When the grace passes, then the lost poll is sent again (the queue holds only newer ones)
    time.sleep(GRACE_S + 0.2)
    publish_due(deps, app)
    assert deps.redis.llen("poll") == 6


def test_a_step_whose_worker_died_mid_step_is_sent_again(deps: Deps) -> None:
    # Given a running job whose poll a worker claimed, and the worker died (the claim lapsed)
    running(deps, "job-1", poll_in_s=0)
    assert deps.store.claim("job-1", [State.RUNNING], lease_s=0.1).ok
    app = Recorder()
    # When a poller looks while the claim holds, then nothing is sent
    publish_due(deps, app)
    assert app.sent == []
    # When a poller looks after the claim lapsed (its lease, then the grace)
    time.sleep(0.1 + GRACE_S + 0.1)
    publish_due(deps, app)
    # Then the poll is sent again, can claim the step, and the timeline says why
    assert app.sent == [("vidqueue.poll", "job-1")]
    assert deps.store.claim("job-1", [State.RUNNING], lease_s=30).ok
    assert deps.store.events("job-1")[-1]["event"] == "re-sent poll: its worker stopped"


# -- jobs waiting for nothing --------------------------------------------------------------


def test_a_due_queued_job_without_a_slot_is_only_cleared(deps: Deps) -> None:
    deps.store.create("job-1", spec())
    backdate(deps, "job-1")
    app = Recorder()
    publish_due(deps, app)
    assert app.sent == []
    assert deps.redis.zscore(keys.due(), "job-1") is None
    assert deps.store.fields("job-1")["state"] == State.QUEUED


def test_a_due_entry_of_a_gone_job_is_dropped(deps: Deps) -> None:
    backdate(deps, "ghost")
    assert publish_due(deps, Recorder()) == 0
    assert deps.redis.zscore(keys.due(), "ghost") is None


def test_a_submit_unknown_job_past_its_deadline_gives_its_slot_back(deps: Deps) -> None:
    # Given a job parked as submit_unknown, holding its slot, now past its provider deadline
    in_state(deps, "job-1", State.SUBMIT_UNKNOWN)
    backdate(deps, "job-1")
    app = Recorder()
    # When a poller looks
    publish_due(deps, app)
    # Then its slot is released, nothing is sent, and it stays submit_unknown, unscheduled
    assert app.sent == []
    assert lease(deps, "job-1") is None
    fields = deps.store.fields("job-1")
    assert fields["state"] == State.SUBMIT_UNKNOWN
    assert "at_provider" not in fields
    assert deps.redis.zscore(keys.due(), "job-1") is None
    assert deps.gate.holders("sim", KEY) == []


def test_a_mirror_sent_again_keeps_its_urgency(deps: Deps) -> None:
    # Given a job whose mirror came due long after its provider finished (its URLs, a day's
    # life, are about to go), and whose mirror message is lost
    in_state(deps, "job-1", State.RUNNING)
    finished = "2020-01-01T00:00:00.000000Z"
    deps.store.transition(
        "job-1",
        [State.RUNNING],
        State.MIRRORING,
        step_s=0,
        change=Change(provider_finished_at=finished),
    )
    backdate(deps, "job-1")
    # When a poller looks, then the mirror is sent again as the most urgent one
    assert due_steps(deps) == (1, [Step("mirror", "job-1", priority=0)])
