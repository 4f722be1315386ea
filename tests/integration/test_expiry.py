"""Promise 4: nothing expires unmirrored while a mirror worker is alive.

- Mirror work is ordered by URL expiry: each mirror message carries a broker priority from the
  time its result URL has left, and kombu's Redis transport hands out the urgent ones first.
- A mirror that finds its URL expired asks the provider for a fresh one (the simulator's
  ``url_ttl_s``), and mirrors the result from there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from config.celery import make_app
from producer.batch import new_job_id
from tests.support.live import KEYS, LiveStack
from workers.deps import Deps, build
from workers.domain import messages, schedule
from workers.domain.jobs import JobSpec, State
from workers.domain.messages import Step
from workers.steps import endings, mirror, poll, submit


def test_the_sooner_a_url_expires_the_more_urgent_its_mirror() -> None:
    lives = [60, 3599, 3600, 5 * 3600, 23 * 3600, 24 * 3600, 7 * 86400]
    priorities = [schedule.mirror_priority(s) for s in lives]
    assert priorities == [0, 0, 3, 3, 6, 9, 9]  # Redis: 0 is consumed first
    # Time already spent since the provider finished counts against the URL's life
    assert schedule.mirror_priority(86400, finished_at=1000.0, now=1000.0 + 23.5 * 3600) == 0


def test_the_mirror_queue_hands_out_the_most_urgent_mirror_first(live: LiveStack) -> None:
    # Given mirror messages sent in the order: least urgent first, on a database no worker reads
    url = live.settings.redis_url.rsplit("/", 1)[0] + "/14"
    db = redis.Redis.from_url(url)
    db.flushdb()
    sender = make_app(live.settings.model_copy(update={"redis_url": url}))
    order = [("a-day", 9), ("five-hours", 3), ("no-priority", None), ("ten-minutes", 0)]
    try:
        messages.send(sender, [Step("mirror", job, priority=p) for job, p in order])
        # When a consumer takes them one by one
        taken = []
        with sender.connection_for_read() as connection:
            channel = connection.default_channel
            while (message := channel.basic_get("mirror", no_ack=True)) is not None:
                taken.append(message.decode()[0][0])
        # Then the urgent ones come first (no priority counts as the most urgent)
        assert taken == ["no-priority", "ten-minutes", "five-hours", "a-day"]
    finally:
        db.flushdb()


@pytest.fixture
def in_process(
    idle_stack: LiveStack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LiveStack, Deps]]:
    """The pipeline's steps run here, on a database no worker reads, against the live simulator
    and S3: each step runs exactly when the test says."""
    live = idle_stack
    monkeypatch.setenv("SIM_ZHIPU_KEY", KEYS["SIM_ZHIPU_KEY"])
    url = live.settings.redis_url.rsplit("/", 1)[0] + "/13"
    deps = build(live.settings.model_copy(update={"redis_url": url}), live.client.catalogue)
    deps.redis.flushdb()
    yield live, deps
    deps.redis.flushdb()


def test_a_mirror_whose_url_expired_gets_a_fresh_one_from_the_provider(
    in_process: tuple[LiveStack, Deps],
) -> None:
    # Given a provider whose result URLs live 1 s, and a job it finished
    live, d = in_process
    live.set_sim(url_ttl_s=1, gen_time_s=0.2, gen_jitter_s=0)
    spec = JobSpec(provider="zhipu", model="cogvideox-flash", prompt="a kite over dunes")
    created = d.store.create(new_job_id(), spec)
    assert created is not None
    job_id = created[0]
    assert endings.dispatch("zhipu", d) == [Step("submit", job_id)]
    [first_poll] = submit.submit(job_id, d)
    time.sleep(max(0.5, first_poll.countdown_s - 1.5))
    [mirror_step] = poll.poll(job_id, d)
    # (its mirror message is as urgent as the provider's URL life says)
    assert mirror_step.task == "mirror" and mirror_step.priority == schedule.mirror_priority(86400)
    # When the mirror only starts after the URL expired
    time.sleep(2.2)
    steps_after = mirror.mirror(job_id, d)
    # Then it asked the provider again, and mirrored the result from the fresh URL
    record = d.store.get(job_id)
    assert record is not None and record.state == State.SUCCEEDED, record
    assert steps_after == []
    assert any(e["event"] == "fresh result URL" for e in d.store.events(job_id))
    stats = live.sim_stats()
    assert stats["expired_url_403"] == 1
    expected = live.sim("GET", f"/_sim/tasks/{record.provider_task_id}/sha256")
    assert record.result is not None
    assert record.result["video"]["sha256"] == expected["video"]
