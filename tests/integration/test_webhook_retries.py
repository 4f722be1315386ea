"""Webhook retries: backoff over up to 24 hours, every attempt in the job's timeline, long waits
scheduled in Redis (for the due pollers) rather than as Celery countdowns."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any, ClassVar

import pytest

from config.providers import MAX_COUNTDOWN_S
from tests.support.live import LiveStack
from workers.deps import Deps, build
from workers.domain import retry
from workers.domain.change import Change
from workers.domain.jobs import JobSpec, State, isoformat, utcnow
from workers.domain.row import Notify
from workers.redis import keys
from workers.steps import due, notify


class FlakyReceiver(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` POSTs, then 204; keeps what it received."""

    failures: ClassVar[int] = 0
    received: ClassVar[list[tuple[dict[str, str], bytes, float]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        FlakyReceiver.received.append(
            ({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        failing = len(FlakyReceiver.received) <= FlakyReceiver.failures
        self.send_response(503 if failing else 204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    FlakyReceiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check per the Standard Webhooks spec, written here from the spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


def test_a_failing_receiver_gets_the_webhook_again_until_it_takes_it(
    idle_stack: LiveStack, receiver: str
) -> None:
    # Given a receiver that fails the first two deliveries
    live = idle_stack
    FlakyReceiver.failures = 2
    spec = {
        "provider": "zhipu",
        "model": "cogvideox-flash",
        "prompt": "x",
        "callback_url": receiver,
    }
    job = live.client.enqueue(spec)
    live.wait_all([job.id])
    # When the job has finished, then the third attempt (after ~1 s, then ~5 s) is delivered
    deadline = time.monotonic() + 30
    while len(FlakyReceiver.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    attempts = FlakyReceiver.received
    assert len(attempts) == 3
    gaps = [b[2] - a[2] for a, b in pairwise(attempts)]
    assert 0.8 <= gaps[0] < 4 and 4 <= gaps[1] < 10, gaps
    # Every attempt is the same message (same webhook-id), correctly signed
    assert len({headers["webhook-id"] for headers, _, _ in attempts}) == 1
    for headers, body, _ in attempts:
        assert verify(live.settings.webhook_secret, headers, body)
        assert json.loads(body)["data"]["id"] == job.id
    # And each attempt is in the job's timeline
    deadline = time.monotonic() + 5
    while not any(e["event"] == "webhook delivered" for e in live.client.events(job.id)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events = [e["event"] for e in live.client.events(job.id)]
    failed = [e for e in events if e.startswith("webhook attempt")]
    assert [e.split(":")[0] for e in failed] == [
        "webhook attempt 1 failed",
        "webhook attempt 2 failed",
    ]
    assert "HTTP 503" in failed[0] and events[-1] == "webhook delivered"


# -- long waits, through the due pollers (on an idle database, driven step by step) --------


@pytest.fixture
def deps(live: LiveStack) -> Iterator[Deps]:
    base = live.settings.redis_url.rsplit("/", 1)[0]
    settings = live.settings.model_copy(update={"redis_url": f"{base}/14"})
    built = build(settings, live.client.catalogue)
    built.redis.flushdb()
    yield built
    built.redis.flushdb()


def _finished_job(d: Deps, url: str, *, attempts: int, ended_ago_s: float = 0) -> str:
    job_id = uuid.uuid4().hex
    spec = JobSpec.model_validate(
        {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x", "callback_url": url}
    )
    d.store.create(job_id, spec)
    ended = isoformat(utcnow() - timedelta(seconds=ended_ago_s))
    ending = Change(notify=Notify.PENDING, completed_at=ended)
    assert d.store.transition(job_id, (State.QUEUED,), State.FAILED, step_s=0, change=ending)
    # As if ``attempts`` webhook attempts had failed already (the counter a retry increments)
    d.redis.hset(keys.job(job_id), "notify_attempts", attempts)
    return job_id


def _step_until_s(d: Deps, job_id: str) -> float:
    raw = d.redis.hget(keys.job(job_id), "step_until")
    assert raw is not None
    return int(raw) / 1000 - time.time()


def test_a_long_wait_is_no_celery_countdown_and_a_due_poller_sends_it_when_due(
    deps: Deps, receiver: str
) -> None:
    # Given a job whose webhook already failed 3 times (the next wait is ~120 s)
    FlakyReceiver.failures = 1
    job_id = _finished_job(deps, receiver, attempts=3)
    # When the 4th attempt fails too
    steps = notify.notify(job_id, deps)
    # Then the next attempt is due in Redis in ~2 minutes: a scheduled step, which no worker
    # publishes before it is due (no countdown message)
    assert [(s.task, s.countdown_s > 100) for s in steps] == [("notify", True)]
    assert 100 < _step_until_s(deps, job_id) < 140
    assert "webhook attempt 4 failed" in deps.store.events(job_id)[-1]["event"]
    assert due.due_steps(deps) == (0, [])  # not due yet
    # When the time has come (the due time moved into the past), a due poller sends it
    deps.redis.zadd(keys.due(), {job_id: (time.time() - 60) * 1000})
    [step] = due.due_steps(deps)[1]
    assert (step.task, step.job_id) == ("notify", job_id)
    # And the attempt it sends is delivered
    assert notify.notify(job_id, deps) == []
    assert deps.store.events(job_id)[-1]["event"] == "webhook delivered"
    assert deps.redis.hget(keys.job(job_id), "notify") == b"delivered"


def test_short_waits_are_scheduled_steps_too(deps: Deps, receiver: str) -> None:
    FlakyReceiver.failures = 1
    job_id = _finished_job(deps, receiver, attempts=0)
    [step] = notify.notify(job_id, deps)
    assert step.task == "notify" and 0 < step.countdown_s <= MAX_COUNTDOWN_S


def test_retries_stop_24_hours_after_the_job_ended(deps: Deps, receiver: str) -> None:
    FlakyReceiver.failures = 100
    job_id = _finished_job(deps, receiver, attempts=2, ended_ago_s=24 * 3600 + 5)
    assert notify.notify(job_id, deps) == []
    assert deps.redis.hget(keys.job(job_id), "notify") == b"failed"
    assert "webhook abandoned after attempt 3" in deps.store.events(job_id)[-1]["event"]
    assert deps.redis.zscore(keys.due(), job_id) is None


def test_the_schedule_spans_most_of_a_day_and_never_beyond_it() -> None:
    total = sum(retry.WEBHOOK.backoff_s)
    assert 20 * 3600 < total <= 24 * 3600
    ended = isoformat(utcnow() - timedelta(hours=23))
    last = retry.WEBHOOK.delay(len(retry.WEBHOOK.backoff_s), completed_at=ended)
    assert last is not None and 3500 < last <= 3600
    now = isoformat(utcnow())
    assert retry.WEBHOOK.delay(retry.WEBHOOK.max_attempts, completed_at=now) is None
