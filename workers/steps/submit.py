"""Submitting: queued → submitting → running, calling the provider exactly once per job.

The step functions here and in the other ``workers.steps`` modules are Celery-free: each
takes a job id and the process's ``Deps`` and returns the next steps to send.

Every step first *claims* its job (``Store.claim``): of two copies of a step — a redelivered
message, a sweep re-send — only one runs, and a duplicate poll chain dies out. Each state
change is a compare-and-set, so a step that lost a race changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import redis

from config.providers import ApiKey, ProviderConfig
from workers.deps import Deps
from workers.domain import callbacks, retry, schedule
from workers.domain.change import Change
from workers.domain.errors import (
    CONCURRENCY_LIMITED,
    SUBMIT_UNKNOWN,
    DuplicateSubmission,
    NotReplicated,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    Throttled,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, State, now_iso, parse_iso
from workers.domain.messages import Step
from workers.domain.row import JobRow, PollMode
from workers.io import uploads
from workers.providers.base import ProviderTask, VideoProvider
from workers.steps.cancelling import honour_cancel
from workers.steps.endings import dispatch, fail, job_error, release

_UNREACHABLE: Final = (redis.ConnectionError, redis.TimeoutError)
PERSIST_WAIT_S: Final = 60.0
# A submit whose mark no replica confirmed tries again this much later.
NOT_REPLICATED_WAIT_S: Final = 2.0

log = logging.getLogger("vidqueue.pipeline")

# A submit_unknown job holds its slot for the model's p99 generation time × 1.5 + 60 s (at
# most the provider's deadline); its due step (the due poller's backstop) comes a minute later.
UNKNOWN_HOLD_PERCENTILE: Final = 0.99
UNKNOWN_HOLD_FACTOR: Final = 1.5
UNKNOWN_HOLD_MARGIN_S: Final = 60.0
UNKNOWN_BACKSTOP_S: Final = 60.0


def submit(job_id: str, d: Deps) -> list[Step]:
    """queued → submitting → running, calling the provider exactly once per job."""
    lease_s = 2 * d.longest_request_s + 5
    row = d.store.claim(job_id, (State.QUEUED, State.SUBMITTING), lease_s=lease_s).row
    if row is None or row.key_id is None:
        return []
    if not d.gate.renew(row.provider, row.key_id, job_id):
        # The slot lease ran out while the job waited to (re)try: it must queue again.
        return _requeue(row, d)
    provider = d.provider(row.provider)
    if row.state == State.SUBMITTING and not provider.idempotent_submit:
        # An earlier attempt died after sending: re-sending could pay twice.
        return _outcome_unknown(row, d, "the submit's outcome is unknown")
    try:
        # The mark that a request may be out: a failover must not lose it, or a re-delivered
        # submit would read the job as never sent and pay twice (workers.redis.replicas).
        moved = d.store.transition(
            job_id,
            (row.state,),
            State.SUBMITTING,
            incr="attempts",
            event="submitting",
            durable=True,
        )
    except NotReplicated as exc:
        return _not_replicated(row, exc, d)
    if not moved:
        return []
    return _send(row, provider, d.key(row.provider, row.key_id), d)


def _not_replicated(row: JobRow, exc: NotReplicated, d: Deps) -> list[Step]:
    """No replica confirmed the mark in time: send nothing on it, and try again shortly, its
    slot kept. (Not a failed attempt: the provider was never called.)"""
    log.warning("job %s: %s; the submit waits", row.id, exc.message)
    back = row.state if row.state != State.SUBMITTING else None
    d.store.transition(
        row.id,
        (State.SUBMITTING,),
        back,
        step_s=NOT_REPLICATED_WAIT_S,
        event=f"submit waits: {exc.code}",
    )
    return [Step("submit", row.id, NOT_REPLICATED_WAIT_S)]


def _send(row: JobRow, provider: VideoProvider, key: ApiKey, d: Deps) -> list[Step]:
    """The one call that creates (and bills) the provider's task; each outcome its own way."""
    config = d.config(row.provider)
    spec = uploads.resolve(row.spec, d.storage)
    try:
        d.limiter.take(config, key.id)
        d.stats.count(config.name, key.id, "submit")
        task = provider.submit(row.id, spec, key, callback_url=_callback_url(row, spec, d))
    except DuplicateSubmission as exc:
        return _outcome_unknown(row, d, exc.message)
    except SubmitOutcomeUnknown as exc:
        d.stats.count_trouble(config.name, key.id, exc)
        if not provider.idempotent_submit:
            return _outcome_unknown(row, d, exc.message)
        # The provider dedupes on the job id: re-sending is safe, and tells us the outcome.
        log.warning("job %s: %s; re-sending with the same request id", row.id, exc.message)
        countdown = retry.SUBMIT.delay(row.attempts)
        d.store.transition(row.id, (State.SUBMITTING,), None, step_s=countdown)
        return [Step("submit", row.id, countdown)]
    except RetryableError as exc:
        d.stats.count_trouble(config.name, key.id, exc)
        if exc.code == CONCURRENCY_LIMITED:
            return _back_off(row, exc, d)
        return _submit_later(row, exc, d)
    except PermanentError as exc:
        d.stats.count_trouble(config.name, key.id, exc)
        return fail(row, (State.SUBMITTING,), exc, d) + release(row, d)
    d.gate.grow(config, key.id)
    return _submitted(row, task, d)


def _requeue(row: JobRow, d: Deps) -> list[Step]:
    """Back to the front of its fair-share queue (a lost lease; nothing reached the provider)."""
    moved = d.store.transition(
        row.id,
        (State.QUEUED,),
        None,
        clear_step=True,
        change=Change(key_id=None),
        event="requeued",
    )
    if moved:
        d.gate.requeue(row.provider, row.fair, row.id, row.score)
    return dispatch(row.provider, d)


def _back_off(row: JobRow, exc: RetryableError, d: Deps) -> list[Step]:
    """The provider says "concurrency too high" although the key is under its cap (the account
    is shared): shrink the key's effective cap, and put the job back at the front of its queue
    with its slot freed. This is not a failed attempt."""
    config, key_id = d.config(row.provider), row.slot_key_id
    cap = d.gate.shrink(config, key_id)
    log.warning(
        "%s/%s: provider concurrency limit; effective cap now %.1f", config.name, key_id, cap
    )
    moved = d.store.transition(
        row.id,
        (State.SUBMITTING,),
        State.QUEUED,
        clear_step=True,
        change=Change(key_id=None),
        event=f"requeued: {exc.code} (effective cap {cap:.1f})",
    )
    d.gate.release(config.name, key_id, row.id)
    if moved:
        d.gate.requeue(config.name, row.fair, row.id, row.score)
    return honour_cancel(row.id, d) + dispatch(config.name, d)


def _submitted(row: JobRow, task: ProviderTask, d: Deps) -> list[Step]:
    """Persist the provider's task id before anything else, then schedule the first poll."""
    config = d.config(row.provider)
    first, mode = _first_poll(row, config, d)
    submitted_at = now_iso()
    learned = Change(
        provider_task_id=task.id,
        task_extra=task.extra,
        submitted_at=submitted_at,
        deadline_ms=int((time.time() + config.timeout_s) * 1000),
        at_provider=True,
        error=None,
        poll_mode=mode,
    )
    from_states = (State.SUBMITTING, State.SUBMIT_UNKNOWN)
    if _persist(
        lambda: d.store.transition(
            row.id,
            from_states,
            State.RUNNING,
            step_s=first,
            change=learned,
            event="running",
            durable=True,
        )
    ):
        waited = parse_iso(submitted_at) - parse_iso(row.created_at)
        d.stats.observe(
            "time_to_submit", waited.total_seconds(), provider=row.provider, model=row.model
        )
        return [Step("poll", row.id, first), *honour_cancel(row.id, d)]
    # Cancelled meanwhile: the provider still works on it, so keep polling to free the slot.
    if d.store.transition(row.id, (State.CANCELLED,), None, step_s=first, change=learned):
        return [Step("poll", row.id, first)]
    return []


def _persist(write: Callable[[], bool]) -> bool:
    """Write what only this process knows (the provider has the task; its id is in memory).
    A write Redis refuses for a while (out of memory, read-only, loading, unreachable) is tried
    again here, backing off, for up to ``PERSIST_WAIT_S`` (below the claim's lease), instead of
    being dropped: dropped, the job could only end as ``submit_unknown``."""
    delay, deadline = 0.25, time.monotonic() + PERSIST_WAIT_S
    while True:
        try:
            return write()
        except redis.RedisError as exc:
            passing = retry.rejected_write(exc) or isinstance(exc, _UNREACHABLE)
            if not passing or time.monotonic() + delay > deadline:
                raise
            log.warning("a write of the submit's outcome was refused (%s); trying again", exc)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def _callback_url(row: JobRow, spec: JobSpec, d: Deps) -> str | None:
    """vidqueue's callback URL for this job, where callbacks are armed: a public base URL is
    set (for the provider or globally) and the provider's wire format takes one for this
    model (docs/callbacks.md). The same job always gets the same URL."""
    if not _armed(row, spec, d):
        return None
    base = callbacks.base_url(d.config(row.provider), d.settings)
    return callbacks.url(base, row.provider, row.id, d.settings.callback_secret)


def _armed(row: JobRow, spec: JobSpec, d: Deps) -> bool:
    config = d.config(row.provider)
    if not callbacks.base_url(config, d.settings):
        return False
    return d.provider(row.provider).accepts_callback(spec)


def _first_poll(row: JobRow, config: ProviderConfig, d: Deps) -> tuple[float, PollMode]:
    """The first poll and how the chain is spaced: the safety interval when the provider
    calls back, else learned from the model's recent durations (or the configured floor)."""
    if _armed(row, row.spec, d):
        return schedule.safety_poll(config), PollMode.SAFETY
    durations = d.recent_durations(config.name, row.model) if config.adaptive_polling else []
    steady = len(durations) >= schedule.MIN_SAMPLES
    return schedule.first_poll(config, durations), PollMode.STEADY if steady else PollMode.BACKOFF


def _submit_later(row: JobRow, exc: RetryableError, d: Deps) -> list[Step]:
    """The provider certainly did not accept the request: keep the slot, try again later.
    Waiting for a request token (``Throttled``) is not a failed attempt."""
    attempts = row.attempts + 1
    if retry.SUBMIT.exhausted(attempts) and not isinstance(exc, Throttled):
        return fail(row, (State.SUBMITTING,), exc, d) + release(row, d)
    countdown = retry.SUBMIT.delay(attempts, exc.retry_after_s)
    d.store.transition(
        row.id,
        (State.SUBMITTING,),
        State.QUEUED,
        step_s=countdown,
        change=Change(error=job_error(exc, retryable=True)),
        event=f"submit retry in {countdown:.1f}s: {exc.code}",
    )
    return [Step("submit", row.id, countdown), *honour_cancel(row.id, d)]


def _outcome_unknown(row: JobRow, d: Deps, why: str) -> list[Step]:
    """Ask the provider for the task by the job id; failing that, park the job for
    reconciliation. Its slot stays held while the provider may still count the task: until
    the model's learned p99 generation time plus a margin (``unknown_hold_s``), at most the
    provider's deadline; the sweep then frees it (``workers.steps.sweep``)."""
    config = d.config(row.provider)
    try:
        found = d.provider(config.name).reconcile(row.id, d.key(config.name, row.slot_key_id))
    except VidqueueError as exc:
        log.warning("job %s: reconcile failed: %s", row.id, exc.message)
        found = None
    if found is not None:
        log.info("job %s: reconciled with provider task %s", row.id, found.id)
        return _submitted(row, found, d)
    unknown = SubmitOutcomeUnknown(f"{config.name}: {why}")
    hold_s = unknown_hold_s(config, d.recent_durations(config.name, row.model))
    now_ms = int(time.time() * 1000)
    parked = d.store.transition(
        row.id,
        (State.SUBMITTING,),
        State.SUBMIT_UNKNOWN,
        # A backstop only: the due poller frees the slot then if no sweep did.
        step_s=hold_s + UNKNOWN_BACKSTOP_S,
        change=Change(
            error=job_error(unknown),
            at_provider=True,
            deadline_ms=now_ms + int(config.timeout_s * 1000),
            hold_since_ms=now_ms,
            hold_until_ms=now_ms + int(hold_s * 1000),
        ),
        event=SUBMIT_UNKNOWN,
    )
    if parked:  # the lease runs out at the hold's end, when the sweep decides it
        d.gate.hold(config.name, row.slot_key_id, row.id, hold_s)
    log.error("job %s parked as submit_unknown (slot held %.0fs): %s", row.id, hold_s, why)
    return honour_cancel(row.id, d)


def unknown_hold_s(config: ProviderConfig, durations: list[float]) -> float:
    """How long a submit_unknown job holds its slot: as long as the provider could still be
    generating it — the model's p99 generation time × 1.5 + 60 s, learned from its recent
    durations, at most the provider's deadline; the deadline while fewer than
    ``schedule.MIN_SAMPLES`` durations are known."""
    if len(durations) < schedule.MIN_SAMPLES:
        return float(config.timeout_s)
    p99 = schedule.percentile(durations, UNKNOWN_HOLD_PERCENTILE)
    return min(float(config.timeout_s), p99 * UNKNOWN_HOLD_FACTOR + UNKNOWN_HOLD_MARGIN_S)
