"""Due steps: a step that is not due yet waits in Redis, and every worker publishes it when due.

A poll that should run in 30 s is not a Celery countdown message parked un-acked in one
worker's memory (at volume that stalls the worker: docs/design.md §3). The transition that
schedules it writes its due time into the ``vq:due`` sorted set; a small poller thread in every
worker takes the due jobs atomically (``lua.TAKE_DUE``) and publishes their steps as ordinary,
immediate messages, which go to whichever worker is free. It is the design of Sidekiq's
scheduled set, BullMQ's delayed set and arq's deferred jobs: no single publisher, nothing held
in memory.

The same set finds lost steps, so there is no separate re-send loop:

- ``send``: a scheduled step fell due → publish it.
- ``resend``: a claimed step's claim lapsed (its worker died mid-step) → publish it again.
- ``check``: a step was published but never claimed within the grace. Its message is either
  still waiting in its queue (a backlog: leave it alone) or lost (a worker killed between
  fetching and claiming it, a lost broker write) → publish it again. Which of the two is told
  by the queue itself: Redis lists are FIFO, so if the oldest message still queued was
  published after ours, ours has left the queue (``QueueTails``).

A step copied twice is harmless (each step claims its job first); the rules above keep copies
rare, so that a backlog of thousands of queued steps causes no re-sends at all.

Redis down or refusing writes (out of memory, a read-only replica, loading) stops no poller: a
pass that fails changes nothing (``TAKE_DUE`` is one script; jobs it took but could not publish
are re-sent by their ``check``), so the poller backs off and tries again, and says so once per
outage, not once per pass.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis

from config.names import QUEUES, StepName
from workers.deps import Deps
from workers.domain import schedule
from workers.domain.change import Change
from workers.domain.jobs import State, parse_iso
from workers.domain.messages import SENT_HEADER, Step, send
from workers.domain.retry import rejected_write
from workers.domain.row import DueJob, Notify
from workers.redis import keys
from workers.redis.stats import note_rejected

log = logging.getLogger("vidqueue.due")

# Jobs taken per Lua call; a full batch makes the poller go again at once.
BATCH: Final = 500
# The longest a poller sleeps between passes (it sleeps less when a step falls due sooner):
# the most a scheduled step can be late, on top of the queue's own wait.
MAX_SLEEP_S: Final = 0.5
# kombu's Redis transport keeps one list per priority step of a queue (``queue`` for 0).
PRIORITY_STEPS: Final = (0, 3, 6, 9)
KOMBU_SEP: Final = "\x06\x16"
# Worker clocks and Redis TIME may differ a little: a message published up to this long after
# the job's ``sent`` time still counts as possibly ours (so a check errs towards leaving it).
CLOCK_MARGIN_MS: Final = 1000
# After a failed pass the poller waits this long, doubling per failed pass up to the maximum:
# an outage costs Redis a few commands a second, and its end is seen within the maximum.
OUTAGE_FIRST_S: Final = 0.25
OUTAGE_MAX_S: Final = 2.0

STEP_OF: Final[dict[State, StepName]] = {
    State.QUEUED: "submit",
    State.SUBMITTING: "submit",
    State.RUNNING: "poll",
    State.MIRRORING: "mirror",
}


def step_for(job: DueJob) -> StepName | None:
    """The step a due job is waiting for, or None if it waits for nothing."""
    if job.state in STEP_OF:
        if STEP_OF[job.state] == "submit" and not job.key_id:
            return None
        return STEP_OF[job.state]
    if job.state == State.CANCELLED and job.at_provider:
        # Polled until the provider lets go; without a task id the lease waits for the deadline.
        return "poll" if job.provider_task_id else None
    return "notify" if job.notify == Notify.PENDING else None


class QueueTails:
    """When the oldest message still waiting in each queue was published (unix ms), read once
    per pass: one LINDEX per priority list of the queues asked about."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._oldest: dict[str, float] = {}

    def may_hold(self, step: StepName, sent_ms: int) -> bool:
        """Whether the step's message, published at ``sent_ms``, may still be in its queue."""
        return self.oldest(QUEUES[step]) <= sent_ms + CLOCK_MARGIN_MS

    def oldest(self, queue: str) -> float:
        if queue not in self._oldest:
            pipe = self.redis.pipeline(transaction=False)
            for priority in PRIORITY_STEPS:
                pipe.lindex(f"{queue}{KOMBU_SEP}{priority}" if priority else queue, -1)
            self._oldest[queue] = min(map(_published_at, pipe.execute()), default=float("inf"))
        return self._oldest[queue]


def _published_at(raw: bytes | None) -> float:
    """A queued message's publish time; none queued: infinity; unknown (not ours): 0."""
    if raw is None:
        return float("inf")
    try:
        return float(json.loads(raw)["headers"][SENT_HEADER])
    except (ValueError, KeyError, TypeError):
        return 0.0


def publish_due(d: Deps, app: Any, limit: int = BATCH) -> int:
    """One pass: take the due jobs and publish their steps. Returns how many jobs were taken."""
    taken, steps = due_steps(d, limit)
    send(app, steps)
    return taken


def due_steps(d: Deps, limit: int = BATCH) -> tuple[int, list[Step]]:
    """Take up to ``limit`` due jobs: how many were taken, and the steps to publish for them."""
    taken = d.store.take_due(limit)
    tails = QueueTails(d.redis)
    return len(taken), [step for job in taken if (step := _step_of(job, tails, d)) is not None]


def _step_of(job: DueJob, tails: QueueTails, d: Deps) -> Step | None:
    if job.state == State.SUBMIT_UNKNOWN:
        _give_up_slot(job, d)
        return None
    step = step_for(job)
    if step is None:
        d.store.transition(job.job_id, (job.state,), None, clear_step=True)
        return None
    if job.kind == "check":
        # A check is only ever due for a step marked sent (TAKE_DUE): ``sent_ms`` is set.
        if tails.may_hold(step, job.sent_ms or 0):
            return None
        if not d.store.mark_resent(job.job_id, job.state, step):
            return None
        log.info("job %s: its %s message was lost; re-sent", job.job_id, step)
    elif job.kind == "resend":
        log.info("job %s: the worker running its %s stopped; re-sent", job.job_id, step)
        d.store.note(job.job_id, f"re-sent {step}: its worker stopped")
    return Step(step, job.job_id, priority=_urgency(step, job, d))


def _urgency(step: StepName, job: DueJob, d: Deps) -> int | None:
    """A mirror keeps its place by URL expiry; other steps need no priority."""
    if step != "mirror":
        return None
    seen = job.provider_finished_at
    finished_at = parse_iso(seen).timestamp() if seen else None
    return schedule.mirror_priority(d.config(job.provider).result_url_ttl_s, finished_at)


def _give_up_slot(job: DueJob, d: Deps) -> None:
    """A submit_unknown job past its provider deadline no longer counts at the provider."""
    if job.key_id:
        d.gate.release(job.provider, job.key_id, job.job_id)
    d.store.transition(
        job.job_id,
        (State.SUBMIT_UNKNOWN,),
        None,
        clear_step=True,
        change=Change(at_provider=False),
    )


class DuePoller:
    """A daemon thread that publishes due steps until stopped. Every worker runs one."""

    def __init__(self, make_deps: Callable[[], Deps], app: Any) -> None:
        self._make_deps = make_deps
        self._app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidqueue-due", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        d: Deps | None = None
        outage = Outage()
        while not self._stop.is_set():
            try:
                # ``d.stats`` carries this process's refused writes to Redis (note_rejected).
                d = d or _with_stats(self._make_deps())
                if publish_due(d, self._app) >= BATCH:
                    outage.passed()
                    continue
                pause = _until_next(d)
                outage.passed()
            except Exception as exc:  # Redis trouble or a bug must not stop the thread
                pause = outage.failed(exc)
            self._stop.wait(pause)


def _with_stats(d: Deps) -> Deps:
    _ = d.stats
    return d


class Outage:
    """Failed passes in a row: logged when they start and when they end (a Redis outage is
    thousands of passes), each followed by a longer wait, up to ``OUTAGE_MAX_S``."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failures = 0

    def failed(self, exc: Exception) -> float:
        """Note a failed pass; returns how long to wait before the next one."""
        note_rejected(exc)
        if self.since is None:
            self.since = time.monotonic()
            if isinstance(exc, redis.RedisError):
                why = f"refuses writes ({reason})" if (reason := rejected_write(exc)) else "fails"
                log.warning("due poller: Redis %s: %s; waiting it out", why, exc)
            else:
                log.exception("due poller: pass failed; trying again with backoff")
        self.failures += 1
        return min(OUTAGE_MAX_S, OUTAGE_FIRST_S * 2.0 ** (self.failures - 1))

    def passed(self) -> None:
        """Note a pass that worked: the end of an outage, if there was one."""
        if self.since is not None:
            took = time.monotonic() - self.since
            log.warning(
                "due poller: working again after %.1f s (%d failed passes)", took, self.failures
            )
            self.since, self.failures = None, 0


def _until_next(d: Deps) -> float:
    """Seconds until the earliest job falls due, at most ``MAX_SLEEP_S`` (this host's clock
    against Redis TIME: a small skew only makes a pass a little early or late)."""
    head = d.redis.zrange(keys.due(), 0, 0, withscores=True)
    if not head:
        return MAX_SLEEP_S
    return min(MAX_SLEEP_S, max(0.005, float(head[0][1]) / 1000 - time.time()))
