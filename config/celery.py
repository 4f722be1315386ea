"""The Celery app (exported as ``workers.app``) and every broker and worker setting, with why.

Roles: ``celery -A workers worker`` (every vidqueue queue; ``-Q`` picks a subset),
``celery -A workers beat`` (exactly one), ``celery -A workers flower``.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from celery import Celery
from celery.signals import worker_init
from kombu import Exchange, Queue

from config import providers
from config.errors import ConfigError
from config.names import QUEUES, TASKS
from config.settings import Settings, get_settings

# Redis re-delivers a message that stays un-acked this long: it must be above the longest step
# (a mirror: < 30 min). No message waits un-acked for a countdown (scheduled steps wait in
# Redis: workers.steps.due), and lost messages are re-sent much sooner by the due pollers.
VISIBILITY_TIMEOUT_S: Final = 3600


def make_app(settings: Settings) -> Celery:
    """A Celery app on ``settings``' Redis. Workers use ``app``; clients may build their own."""
    app = Celery("vidqueue", include=["workers.tasks"])
    app.conf.update(**_broker(settings), **_messages(), **_worker(settings), **_beat(settings))
    # Every worker publishes the steps that fall due (scheduled in Redis, not parked in memory).
    app.steps["worker"].add("workers.bootsteps:DuePollerStep")
    return app


def _broker(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        # Redis restarts: keep trying instead of crashing the worker.
        "retry_on_timeout": True,
        "socket_keepalive": True,
        "health_check_interval": 25,
        # A read on a connection whose server went away without closing it (a failed-over
        # master) would otherwise wait forever: the failover test caught a worker's event loop
        # blocked for good in a pub/sub read after a Sentinel failover. Broker commands answer
        # in milliseconds, and BRPOP (1 s) is only read once readable.
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
    }
    transport = "workers.redis.broker:Transport"
    sentinel = settings.sentinel
    if sentinel is not None:
        # Celery's own Sentinel form: the URL lists the Sentinels, these name the master.
        transport = "workers.redis.broker:SentinelTransport"
        options["master_name"] = sentinel.master
        options["sentinel_kwargs"] = sentinel.sentinel_kwargs()
    return dict(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        # kombu's Redis transport, fixed so that a worker survives a Redis restart (Celery 5.7
        # otherwise exits on the reconnect whenever it holds un-acked messages) and Redis
        # refusing writes (out of memory, read-only, loading: kombu takes those for
        # unrecoverable, and the worker exited): workers.redis.broker. Its Sentinel variant
        # serves sentinel:// URLs.
        broker_transport=transport,
        broker_transport_options=options,
    )


def _messages() -> dict[str, Any]:
    return dict(
        # Job ids only travel in messages, as JSON; nothing is pickled, no results are stored.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # Explicit queues only: a typo in a queue name fails instead of creating a dead queue.
        task_queues=[
            Queue(q, Exchange(q, type="direct"), routing_key=q)
            for q in sorted(set(QUEUES.values()))
        ],
        task_routes={TASKS[step]: {"queue": QUEUES[step]} for step in TASKS},
        task_default_queue=QUEUES["sweep"],
        task_create_missing_queues=False,
    )


def _worker(settings: Settings) -> dict[str, Any]:
    return dict(
        # Every task is idempotent (it claims its step first), so a message is acked only after
        # the task ran, and a worker killed mid-task gets its message re-delivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a busy process does not sit on others' work.
        worker_prefetch_multiplier=1,
        # On SIGTERM, give running tasks time to finish before the cold shutdown re-queues them.
        worker_soft_shutdown_timeout=20.0,
        worker_enable_soft_shutdown_on_idle=True,
        # A lost broker connection (a Redis restart) must not cut short a running step. Redis
        # re-delivers its un-acked message only after the visibility timeout, and every step
        # claims its job (a late duplicate does nothing), so finishing the step loses nothing;
        # terminating it would hold a mirror for its claim lease (minutes) and turn a submit
        # whose request was sent into submit_unknown. (Celery warns on each loss; it may.)
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Flower needs task events (VIDQUEUE_TASK_EVENTS=false turns them off).
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
    )


def _beat(settings: Settings) -> dict[str, Any]:
    return dict(
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            "vidqueue-sweep": {
                "task": TASKS["sweep"],
                "schedule": settings.sweep_interval_s,
                # A sweep that could not run in time is superseded by the next one.
                "options": {"queue": QUEUES["sweep"], "expires": settings.sweep_interval_s},
            }
        },
    )


@worker_init.connect
def _check_config(**_: Any) -> None:
    """Stop a worker at startup when the providers file or an API key variable is wrong.

    Celery logs and swallows exceptions from signal handlers, so exit explicitly.
    """
    try:
        settings = get_settings()
        catalogue = providers.load(settings.providers_file)
        catalogue.check_keys()
        catalogue.check_callbacks(settings.public_base_url, settings.callback_secret)
    except ConfigError as exc:
        print(f"vidqueue: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(78) from None  # EX_CONFIG


app = make_app(get_settings())
