"""Polling: ask the provider how a submitted job is doing, until it finishes.

The chain re-schedules itself with countdowns (at most 60 s, far below the broker's visibility
timeout). On a terminal status the job's slot is freed at once and handed to the next waiting
job, so the queue adds almost nothing on top of the provider's own time.
"""

from __future__ import annotations

import json
import time
from typing import Final

from workers.deps import Deps
from workers.domain import schedule
from workers.domain.errors import TIMEOUT, PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobError, ProviderStatus, State, now_iso, parse_iso
from workers.domain.messages import Step
from workers.providers.base import PollResult, ProviderTask
from workers.steps.endings import fail, finish, provider_let_go, release

# States a poll chain serves: running, and cancelled while the provider still works on it.
POLLED: Final = (State.RUNNING, State.CANCELLED)


def poll(job_id: str, d: Deps) -> list[Step]:
    """Ask the provider how the job is doing; on a terminal status free the slot at once.

    A job cancelled while the provider still works on it is polled on (state ``cancelled``,
    ``at_provider``) only to learn when its slot is free again.
    """
    # The lease covers one HTTP call: a poll killed mid-call is re-sent soon after.
    claim = d.store.claim(job_id, POLLED, lease_s=d.longest_request_s + 10)
    fields = claim.fields
    if not claim.ok or (claim.state == State.CANCELLED and fields.get("at_provider") != "1"):
        return []
    config = d.config(fields["provider"])
    remaining_s = int(fields.get("deadline_ms", "0")) / 1000 - time.time()
    if remaining_s <= 0:
        exc = PermanentError(f"{config.name}: not finished after {config.timeout_s:.0f}s")
        exc.code = TIMEOUT
        return _stop(job_id, fields, exc, d)
    d.gate.renew(config.name, fields["key_id"], job_id)
    task = ProviderTask(fields["provider_task_id"], json.loads(fields.get("task_extra") or "{}"))
    polls = int(fields.get("polls", "0")) + 1
    try:
        d.limiter.take(config, fields["key_id"])
        d.stats.count(config.name, fields["key_id"], "poll")
        result = d.provider(config.name).poll(task, d.key(config.name, fields["key_id"]))
    except RetryableError as exc:
        if exc.retry_after_s:
            delay = min(exc.retry_after_s, schedule.RETRY_CAP_S)
        else:
            delay = schedule.next_poll(config, polls, remaining_s=remaining_s)
        return _poll_again(job_id, delay, d, event=f"poll error: {exc.code}")
    except PermanentError as exc:
        return _stop(job_id, fields, exc, d)
    if result.status in (ProviderStatus.QUEUED, ProviderStatus.RUNNING):
        delay = schedule.next_poll(
            config,
            polls,
            hint_s=result.poll_after_s,
            remaining_s=remaining_s,
            steady=fields.get("poll_mode") == "steady",
        )
        return _poll_again(job_id, delay, d)
    if fields["state"] == State.CANCELLED:
        return provider_let_go(job_id, fields, d, f"provider {result.status} after cancel")
    return _finished(job_id, fields, result, d)


def _stop(job_id: str, fields: dict[str, str], exc: VidqueueError, d: Deps) -> list[Step]:
    """Polling cannot go on: fail a running job; a cancelled one just lets its slot go."""
    if fields["state"] == State.CANCELLED:
        return provider_let_go(job_id, fields, d, f"stopped polling: {exc.code}")
    return fail(job_id, (State.RUNNING,), exc, fields, d) + release(fields, d)


def _poll_again(job_id: str, countdown: float, d: Deps, *, event: str = "") -> list[Step]:
    moved = d.store.transition(job_id, POLLED, None, step_s=countdown, incr="polls", event=event)
    return [Step("poll", job_id, countdown)] if moved else []


def _finished(job_id: str, fields: dict[str, str], result: PollResult, d: Deps) -> list[Step]:
    """Record what the provider said (first), then free the slot (second)."""
    seen = {"provider_finished_at": now_iso(), "at_provider": ""}
    _learn(fields, seen["provider_finished_at"], result, d)
    if result.status == ProviderStatus.SUCCEEDED:
        moved = d.store.transition(
            job_id,
            (State.RUNNING,),
            State.MIRRORING,
            step_s=0,
            incr="polls",
            fields={
                **seen,
                "video_url": result.video_url or "",
                "cover_url": result.cover_url or "",
            },
            event="provider succeeded",
        )
        urgency = schedule.mirror_priority(d.config(fields["provider"]).result_url_ttl_s)
        steps = [Step("mirror", job_id, priority=urgency)] if moved else []
    else:
        to = State.CANCELLED if result.status == ProviderStatus.CANCELLED else State.FAILED
        error = JobError(
            code=result.error_code or "provider_failed",
            message=result.error_message or f"the provider reported {result.raw_status}",
        )
        steps = finish(job_id, (State.RUNNING,), to, error, fields, d, extra=seen, incr="polls")
    return steps + release(fields, d)


def _learn(fields: dict[str, str], seen_at: str, result: PollResult, d: Deps) -> None:
    """Remember how long the generation took (for the first poll's timing) and the metrics."""
    taken = (parse_iso(seen_at) - parse_iso(fields["submitted_at"])).total_seconds()
    d.stats.observe("generation", taken)
    if result.status == ProviderStatus.SUCCEEDED:
        d.stats.record_duration(fields["provider"], fields["model"], taken)
    if result.finished_at is not None:
        d.stats.observe("detection_lag", max(0.0, time.time() - result.finished_at))
