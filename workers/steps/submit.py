"""Submitting: queued → submitting → running, calling the provider exactly once per job.

The step functions here and in the other ``workers.steps`` modules are Celery-free: each
takes a job id and the process's ``Deps`` and returns the next steps to send.

Every step first *claims* its job (``Store.claim``): of two copies of a step — a redelivered
message, a sweep re-send — only one runs, and a duplicate poll chain dies out. Each state
change is a compare-and-set, so a step that lost a race changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from workers.deps import Deps
from workers.domain import schedule
from workers.domain.errors import (
    CONCURRENCY_LIMITED,
    RATE_LIMITED,
    SUBMIT_UNKNOWN,
    DuplicateSubmission,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    Throttled,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, State, now_iso, parse_iso
from workers.domain.messages import Step
from workers.io import uploads
from workers.providers.base import ProviderTask
from workers.steps.cancelling import honour_cancel
from workers.steps.endings import dispatch, error_json, fail, release

log = logging.getLogger("vidqueue.pipeline")

# After this many retryable submit failures the job fails instead of trying again.
MAX_SUBMIT_ATTEMPTS: Final = 12


def submit(job_id: str, d: Deps) -> list[Step]:
    """queued → submitting → running, calling the provider exactly once per job."""
    lease_s = 2 * d.longest_request_s + 5
    claim = d.store.claim(job_id, (State.QUEUED, State.SUBMITTING), lease_s=lease_s)
    if not claim.ok or not claim.fields.get("key_id"):
        return []
    fields = claim.fields
    config = d.config(fields["provider"])
    if not d.gate.renew(config.name, fields["key_id"], job_id):
        # The slot lease ran out while the job waited to (re)try: it must queue again.
        return _requeue(job_id, fields, d)
    provider = d.provider(config.name)
    if claim.state == State.SUBMITTING and not provider.idempotent_submit:
        # An earlier attempt died after sending: re-sending could pay twice.
        return _outcome_unknown(job_id, fields, d, "the submit's outcome is unknown")
    moved = d.store.transition(
        job_id, (State(claim.state),), State.SUBMITTING, incr="attempts", event="submitting"
    )
    if not moved:
        return []
    spec = JobSpec.model_validate_json(fields["spec"])
    spec = uploads.resolve(spec, d.storage)
    key = d.key(config.name, fields["key_id"])
    try:
        d.limiter.take(config, key.id)
        d.stats.count(config.name, key.id, "submit")
        task = provider.submit(job_id, spec, key)
    except DuplicateSubmission as exc:
        return _outcome_unknown(job_id, fields, d, exc.message)
    except SubmitOutcomeUnknown as exc:
        if not provider.idempotent_submit:
            return _outcome_unknown(job_id, fields, d, exc.message)
        # The provider dedupes on the job id: re-sending is safe, and tells us the outcome.
        log.warning("job %s: %s; re-sending with the same request id", job_id, exc.message)
        countdown = schedule.retry_backoff(int(fields.get("attempts", "0")))
        d.store.transition(job_id, (State.SUBMITTING,), None, step_s=countdown)
        return [Step("submit", job_id, countdown)]
    except RetryableError as exc:
        if exc.code == CONCURRENCY_LIMITED:
            d.stats.count(config.name, key.id, "throttled")
            return _back_off(job_id, fields, exc, d)
        if exc.code == RATE_LIMITED:
            d.stats.count(config.name, key.id, "throttled")
        return _submit_later(job_id, fields, exc, d)
    except PermanentError as exc:
        return fail(job_id, (State.SUBMITTING,), exc, fields, d) + release(fields, d)
    d.gate.grow(config, key.id)
    return _submitted(job_id, fields, task, d)


def _requeue(job_id: str, fields: dict[str, str], d: Deps) -> list[Step]:
    """Back to the front of its fair-share queue (a lost lease; nothing reached the provider)."""
    moved = d.store.transition(
        job_id, (State.QUEUED,), None, clear_step=True, fields={"key_id": ""}, event="requeued"
    )
    if moved:
        d.gate.requeue(fields["provider"], fields["fair"], job_id, fields["score"])
    return dispatch(fields["provider"], d)


def _back_off(job_id: str, fields: dict[str, str], exc: RetryableError, d: Deps) -> list[Step]:
    """The provider says "concurrency too high" although the key is under its cap (the account
    is shared): shrink the key's effective cap, and put the job back at the front of its queue
    with its slot freed. This is not a failed attempt."""
    config = d.config(fields["provider"])
    cap = d.gate.shrink(config, fields["key_id"])
    log.warning(
        "%s/%s: provider concurrency limit; effective cap now %.1f",
        config.name,
        fields["key_id"],
        cap,
    )
    moved = d.store.transition(
        job_id,
        (State.SUBMITTING,),
        State.QUEUED,
        clear_step=True,
        fields={"key_id": ""},
        event=f"requeued: {exc.code} (effective cap {cap:.1f})",
    )
    d.gate.release(config.name, fields["key_id"], job_id)
    if moved:
        d.gate.requeue(config.name, fields["fair"], job_id, fields["score"])
    return honour_cancel(job_id, d) + dispatch(config.name, d)


def _submitted(job_id: str, fields: dict[str, str], task: ProviderTask, d: Deps) -> list[Step]:
    """Persist the provider's task id before anything else, then schedule the first poll."""
    config = d.config(fields["provider"])
    durations = d.recent_durations(config.name, fields["model"]) if config.adaptive_polling else []
    first = schedule.first_poll(config, durations)
    submitted_at = now_iso()
    learned: dict[str, str | int] = {
        "provider_task_id": task.id,
        "task_extra": json.dumps(task.extra),
        "submitted_at": submitted_at,
        "deadline_ms": int((time.time() + config.timeout_s) * 1000),
        "at_provider": "1",
        "error": "",
        "poll_mode": "steady" if len(durations) >= schedule.MIN_SAMPLES else "backoff",
    }
    from_states = (State.SUBMITTING, State.SUBMIT_UNKNOWN)
    if d.store.transition(
        job_id, from_states, State.RUNNING, step_s=first, fields=learned, event="running"
    ):
        waited = parse_iso(submitted_at) - parse_iso(fields["created_at"])
        d.stats.observe("time_to_submit", waited.total_seconds())
        return [Step("poll", job_id, first), *honour_cancel(job_id, d)]
    # Cancelled meanwhile: the provider still works on it, so keep polling to free the slot.
    if d.store.transition(job_id, (State.CANCELLED,), None, step_s=first, fields=learned):
        return [Step("poll", job_id, first)]
    return []


def _submit_later(job_id: str, fields: dict[str, str], exc: RetryableError, d: Deps) -> list[Step]:
    """The provider certainly did not accept the request: keep the slot, try again later.
    Waiting for a request token (``Throttled``) is not a failed attempt."""
    attempts = int(fields.get("attempts", "0")) + 1
    if attempts >= MAX_SUBMIT_ATTEMPTS and not isinstance(exc, Throttled):
        return fail(job_id, (State.SUBMITTING,), exc, fields, d) + release(fields, d)
    countdown = exc.retry_after_s or schedule.retry_backoff(attempts)
    countdown = min(countdown, schedule.RETRY_CAP_S)
    d.store.transition(
        job_id,
        (State.SUBMITTING,),
        State.QUEUED,
        step_s=countdown,
        fields={"error": error_json(exc, retryable=True)},
        event=f"submit retry in {countdown:.1f}s: {exc.code}",
    )
    return [Step("submit", job_id, countdown), *honour_cancel(job_id, d)]


def _outcome_unknown(job_id: str, fields: dict[str, str], d: Deps, why: str) -> list[Step]:
    """Ask the provider for the task by the job id; failing that, park the job for
    reconciliation. Its slot stays held until the provider's deadline, since the provider may
    be generating it; the sweep frees the slot after that."""
    config = d.config(fields["provider"])
    try:
        found = d.provider(config.name).reconcile(job_id, d.key(config.name, fields["key_id"]))
    except VidqueueError as exc:
        log.warning("job %s: reconcile failed: %s", job_id, exc.message)
        found = None
    if found is not None:
        log.info("job %s: reconciled with provider task %s", job_id, found.id)
        return _submitted(job_id, fields, found, d)
    unknown = SubmitOutcomeUnknown(f"{config.name}: {why}")
    d.store.transition(
        job_id,
        (State.SUBMITTING,),
        State.SUBMIT_UNKNOWN,
        step_s=config.timeout_s,
        fields={
            "error": error_json(unknown),
            "at_provider": "1",
            "deadline_ms": int((time.time() + config.timeout_s) * 1000),
        },
        event=SUBMIT_UNKNOWN,
    )
    log.error("job %s parked as submit_unknown: %s", job_id, why)
    return honour_cancel(job_id, d)
