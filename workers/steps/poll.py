"""Polling: ask the provider how a submitted job is doing, until it finishes.

The chain re-schedules itself with countdowns (at most 60 s, far below the broker's visibility
timeout). On a terminal status the job's slot is freed at once and handed to the next waiting
job, so the queue adds almost nothing on top of the provider's own time.
"""

from __future__ import annotations

import time
from typing import Final

from config.providers import ProviderConfig
from workers.deps import Deps
from workers.domain import retry, schedule
from workers.domain.change import Change
from workers.domain.errors import TIMEOUT, PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobError, ProviderStatus, State, now_iso, parse_iso
from workers.domain.messages import Step
from workers.domain.row import JobRow, PollMode
from workers.providers.base import PollResult
from workers.steps.endings import fail, finish, provider_let_go, provider_task, release

# States a poll chain serves: running, and cancelled while the provider still works on it.
POLLED: Final = (State.RUNNING, State.CANCELLED)


def poll(job_id: str, d: Deps) -> list[Step]:
    """Ask the provider how the job is doing; on a terminal status free the slot at once.

    A job cancelled while the provider still works on it is polled on (state ``cancelled``,
    ``at_provider``) only to learn when its slot is free again.
    """
    # The lease covers one HTTP call: a poll killed mid-call is re-sent soon after.
    claim = d.store.claim(job_id, POLLED, lease_s=d.longest_request_s + 10)
    row = claim.row
    if row is None or (row.state == State.CANCELLED and not row.at_provider):
        return []
    config = d.config(row.provider)
    remaining_s = row.deadline_ms / 1000 - time.time()
    if remaining_s <= 0:
        late = f"{config.name}: not finished after {config.timeout_s:.0f}s"
        return _stop(row, PermanentError(late, code=TIMEOUT), d)
    d.gate.renew(config.name, row.slot_key_id, job_id)
    return _ask(row, config, remaining_s, d)


def _ask(row: JobRow, config: ProviderConfig, remaining_s: float, d: Deps) -> list[Step]:
    """One status request; what it says decides the next poll, or the job's end."""
    key_id, polls = row.slot_key_id, row.polls + 1
    try:
        d.limiter.take(config, key_id)
        d.stats.count(config.name, key_id, "poll")
        result = d.provider(config.name).poll(provider_task(row), d.key(config.name, key_id))
    except RetryableError as exc:
        d.stats.count_trouble(config.name, key_id, exc)
        if exc.retry_after_s:
            delay = min(exc.retry_after_s, retry.RETRY_CAP_S)
        else:
            delay = schedule.next_poll(config, polls, remaining_s=remaining_s)
        return _poll_again(row.id, delay, d, event=f"poll error: {exc.code}")
    except PermanentError as exc:
        d.stats.count_trouble(config.name, key_id, exc)
        return _stop(row, exc, d)
    if result.status in (ProviderStatus.QUEUED, ProviderStatus.RUNNING):
        return _poll_again(row.id, _next(row, config, polls, result, remaining_s), d)
    if row.state == State.CANCELLED:
        return provider_let_go(row, d, f"provider {result.status} after cancel")
    return _finished(row, result, d)


def _next(
    row: JobRow, config: ProviderConfig, polls: int, result: PollResult, remaining_s: float
) -> float:
    """When to ask again: at the safety interval when the provider calls back, else by the
    poll schedule (the provider's own hint honoured)."""
    if row.poll_mode == PollMode.SAFETY:
        return min(schedule.safety_poll(config), max(0.0, remaining_s))
    steady = row.poll_mode == PollMode.STEADY
    hint = result.poll_after_s
    return schedule.next_poll(config, polls, hint_s=hint, remaining_s=remaining_s, steady=steady)


def _stop(row: JobRow, exc: VidqueueError, d: Deps) -> list[Step]:
    """Polling cannot go on: fail a running job; a cancelled one just lets its slot go."""
    if row.state == State.CANCELLED:
        return provider_let_go(row, d, f"stopped polling: {exc.code}")
    return fail(row, (State.RUNNING,), exc, d) + release(row, d)


def _poll_again(job_id: str, countdown: float, d: Deps, *, event: str = "") -> list[Step]:
    moved = d.store.transition(job_id, POLLED, None, step_s=countdown, incr="polls", event=event)
    return [Step("poll", job_id, countdown)] if moved else []


def _finished(row: JobRow, result: PollResult, d: Deps) -> list[Step]:
    """Record what the provider said (first), then free the slot (second)."""
    seen_at = now_iso()
    _learn(row, seen_at, result, d)
    if result.status == ProviderStatus.SUCCEEDED:
        steps = _to_mirror(row, seen_at, result, d)
    else:
        to = State.CANCELLED if result.status == ProviderStatus.CANCELLED else State.FAILED
        error = JobError(
            code=result.error_code or "provider_failed",
            message=result.error_message or f"the provider reported {result.raw_status}",
        )
        seen = Change(provider_finished_at=seen_at, at_provider=False)
        steps = finish(row, (State.RUNNING,), to, error, d, change=seen, incr="polls")
    return steps + release(row, d)


def _to_mirror(row: JobRow, seen_at: str, result: PollResult, d: Deps) -> list[Step]:
    """The provider succeeded: keep its result URLs and mirror them, most urgent first."""
    moved = d.store.transition(
        row.id,
        (State.RUNNING,),
        State.MIRRORING,
        step_s=0,
        incr="polls",
        change=Change(
            provider_finished_at=seen_at,
            at_provider=False,
            video_url=result.video_url,
            cover_url=result.cover_url,
        ),
        event="provider succeeded",
    )
    urgency = schedule.mirror_priority(d.config(row.provider).result_url_ttl_s)
    return [Step("mirror", row.id, priority=urgency)] if moved else []


def _learn(row: JobRow, seen_at: str, result: PollResult, d: Deps) -> None:
    """Remember how long the generation took (for the first poll's timing) and the metrics."""
    if row.submitted_at is None:  # never for a job that reached a poll: nothing to measure
        return
    taken = (parse_iso(seen_at) - parse_iso(row.submitted_at)).total_seconds()
    d.stats.observe("generation", taken, provider=row.provider, model=row.model)
    if result.status == ProviderStatus.SUCCEEDED:
        d.stats.record_duration(row.provider, row.model, taken)
    if result.finished_at is not None:
        lag = max(0.0, time.time() - result.finished_at)
        d.stats.observe("detection_lag", lag, provider=row.provider, model=row.model)
