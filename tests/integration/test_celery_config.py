"""The Celery wiring: explicit queues, one message per step, the reliability settings."""

from __future__ import annotations

import redis

from config import names
from config.celery import VISIBILITY_TIMEOUT_S, app, make_app
from tests.support.live import LiveStack
from workers.domain import messages


def test_each_step_lands_in_exactly_its_own_queue(live: LiveStack) -> None:
    # Given an app on a database no worker consumes
    url = live.settings.redis_url.rsplit("/", 1)[0] + "/14"
    db = redis.Redis.from_url(url)
    db.flushdb()
    sender = make_app(live.settings.model_copy(update={"redis_url": url}))
    try:
        for name in ("submit", "poll", "mirror", "notify"):
            # When one step is sent
            messages.send(sender, [messages.Step(name, "job-1")])  # type: ignore[arg-type]
            # Then exactly one message waits, in the queue named for the step
            lengths = {q: db.llen(q) for q in names.QUEUES.values()}
            assert lengths == {q: int(q == name) for q in names.QUEUES.values()}
            db.delete(name)
    finally:
        db.flushdb()


def test_reliability_settings_are_set() -> None:
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_create_missing_queues is False
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_S
    # No countdown message is parked in a worker (scheduled steps wait in Redis), so no limit
    # on them is needed: a limit that is reached stops the worker consuming (docs/design.md §3).
    assert conf.worker_eta_task_limit is None
    assert "workers.bootsteps:DuePollerStep" in app.steps["worker"]
    assert {q.name for q in conf.task_queues} == set(names.QUEUES.values())


def test_task_names_are_the_stable_contract() -> None:
    import workers.tasks  # noqa: F401  (registers the tasks)

    registered = {n for n in app.tasks if n.startswith("vidqueue.")}
    assert registered == {
        "vidqueue.submit",
        "vidqueue.poll",
        "vidqueue.mirror",
        "vidqueue.notify",
        "vidqueue.sweep",
        "vidqueue.cancel",
    }
    for step, name in names.TASKS.items():
        assert app.amqp.router.route({}, name)["queue"].name == names.QUEUES[step]
