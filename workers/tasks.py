"""The Celery tasks: thin, named, and only translating between Celery and the pipeline.

Each task takes the job id and nothing else, runs one step function, and publishes the steps
it returns. An exception that escapes a step is logged by Celery; the step's claim then
lapses and a due poller re-sends it, so no error path needs its own retry loop here. Only a
Redis hiccup is retried by Celery itself (``retry.REDIS_HICCUP``, in the one retry table):
Redis unreachable, or refusing writes (out of memory, read-only, loading).

A step that Redis refused a write mid-way has claimed its job (``Store.claim``), so no copy of
the step would run before the claim lapses: a minute and more for a submit, long after a short
outage ended. So the task waits up to ``REFUSAL_WAIT_S`` for Redis to take writes again and
then makes the job's step due at once (a due poller publishes it). After a longer outage it
raises; Celery's retry cannot be published while Redis refuses writes, so Celery drops this
message, and the job's step, still in ``vq:due``, is re-sent when its claim lapses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import redis
from celery.signals import worker_process_init

from config.celery import app
from config.names import TASKS
from config.settings import get_settings
from workers.deps import Deps, build, warm
from workers.domain import retry
from workers.domain.jobs import State
from workers.domain.messages import Step, send
from workers.redis.stats import note_rejected
from workers.steps import cancel as cancel_step
from workers.steps import mirror as mirror_step
from workers.steps import notify as notify_step
from workers.steps import poll as poll_step
from workers.steps import submit as submit_step
from workers.steps.sweep import sweep as sweep_step

log = logging.getLogger("vidqueue.tasks")
# httpx logs every request at INFO: at hundreds of polls a second that is CPU and log volume
# for nothing, and result URLs carry signed query strings. Its warnings still show.
logging.getLogger("httpx").setLevel(logging.WARNING)

_deps: Deps | None = None

# Redis hiccups (a restart, a failover) are retried by Celery itself; the rest by due pollers.
_COMMON: dict[str, Any] = retry.REDIS_HICCUP.options()


def deps() -> Deps:
    """This process's clients (built when the process starts: ``_warm_up``)."""
    global _deps
    if _deps is None:
        _deps = build(get_settings())
    return _deps


def fresh_deps() -> Deps:
    """Clients of their own, for a thread that must not share this process's (the due poller).
    Redis only: the poller never calls a provider or S3, and building those (an HTTP pool, two
    boto3 clients) would slow this process's consumer just as a fresh worker takes its first
    tasks."""
    d = build(get_settings())
    d.redis.ping()
    return d


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """A prefork child: build its clients as it starts (a parent's are never reused)."""
    global _deps
    _deps = None
    warm_up_here()


def warm_up_here() -> None:
    """Build this process's clients now, not on its first task: a worker just added
    (``--scale``) submits its first job at once."""
    global _deps
    try:
        warm(deps())
    except Exception:  # Redis may be down now: the first task builds them then
        log.exception("could not build the clients at startup; the first task will")
        _deps = None


# How long a step whose write Redis refused waits for Redis to take writes again (below every
# step's soft time limit), and how often it asks meanwhile.
REFUSAL_WAIT_S: Final = 30.0
REFUSAL_PROBE_S: Final = 0.5


def _run(step: Callable[[str, Deps], list[Step]], job_id: str) -> None:
    _publish(lambda: step(job_id, deps()), job_id)


def _publish(run: Callable[[], list[Step]], job_id: str = "") -> None:
    """Run a step and publish what it returns. A refusal redis-py left untyped (a plain
    ``ResponseError`` saying "OOM ...") is raised as its typed class, so Celery retries it;
    every refusal is counted for /metrics, and a job's step refused mid-way is handed back
    (``_hand_back``) when Redis takes writes again soon enough."""
    try:
        send(app, run())
    except redis.RedisError as exc:
        note_rejected(exc)
        refusal = retry.typed(exc)
        if job_id and retry.rejected_write(refusal) and _hand_back(job_id, deps()):
            return
        if refusal is exc:
            raise
        raise refusal from exc


def _hand_back(job_id: str, d: Deps) -> bool:
    """Wait (at most ``REFUSAL_WAIT_S``) until Redis takes writes, then make the job's step
    due now, in the state it is in (a compare-and-set: a job another copy moved on meanwhile is
    left to it). Returns whether this message is done with.

    Never for a job in ``submitting``: the provider may have been called, and only the claim
    keeps a second copy from running while the first stores its answer (§4 of the design)."""
    deadline = time.monotonic() + REFUSAL_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(REFUSAL_PROBE_S)
        try:
            row = d.store.row(job_id)
            if row is None or row.state in (State.SUBMITTING, State.SUBMIT_UNKNOWN):
                return row is None
            if d.store.transition(job_id, (row.state,), None, step_s=0.001):
                log.info("job %s: Redis takes writes again; its %s step is due", job_id, row.state)
            return True
        except redis.RedisError as exc:
            if retry.rejected_write(exc) is None:
                return False
    return False


# Soft limits sit below the hard ones so a step can end cleanly; both above the step's own
# HTTP timeouts. A step cut short leaves its claim to lapse, and a due poller re-sends it.
@app.task(name=TASKS["submit"], soft_time_limit=150, time_limit=180, **_COMMON)
def submit(job_id: str) -> None:
    _run(submit_step.submit, job_id)


@app.task(name=TASKS["poll"], soft_time_limit=90, time_limit=120, **_COMMON)
def poll(job_id: str) -> None:
    _run(poll_step.poll, job_id)


@app.task(name=TASKS["mirror"], soft_time_limit=1500, time_limit=1700, **_COMMON)
def mirror(job_id: str) -> None:
    _run(mirror_step.mirror, job_id)


@app.task(name=TASKS["notify"], soft_time_limit=45, time_limit=60, **_COMMON)
def notify(job_id: str) -> None:
    _run(notify_step.notify, job_id)


@app.task(name=TASKS["sweep"], soft_time_limit=120, time_limit=150, **_COMMON)
def sweep() -> None:
    _publish(lambda: sweep_step(deps()))


@app.task(name=TASKS["cancel"], soft_time_limit=60, time_limit=90, **_COMMON)
def cancel(job_id: str) -> None:
    _run(cancel_step.cancel_at_provider, job_id)
