"""The job's life at the provider, as Celery-free step functions that return the next steps.

Every step first *claims* its job (``Store.claim``): of two copies of a step — a redelivered
message, a sweep re-send — only one runs, and a duplicate poll chain dies out. Each state
change is a compare-and-set, so a step that lost a race changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from config.providers import MAX_COUNTDOWN_S
from workers import schedule, uploads
from workers.deps import Deps
from workers.errors import (
    CANCELLED,
    CONCURRENCY_LIMITED,
    RATE_LIMITED,
    SUBMIT_UNKNOWN,
    DuplicateSubmission,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.jobs import JobError, JobSpec, State, now_iso, parse_iso
from workers.providers.base import ProviderTask
from workers.ratelimit import Throttled
from workers.steps import Step

log = logging.getLogger("vidqueue.pipeline")

# After this many retryable submit failures the job fails instead of trying again.
MAX_SUBMIT_ATTEMPTS: Final = 12
AT_PROVIDER: Final = (State.SUBMITTING, State.SUBMIT_UNKNOWN, State.RUNNING)


def error_json(exc: VidqueueError, *, retryable: bool = False) -> str:
    return JobError(code=exc.code, message=exc.message, retryable=retryable).model_dump_json()


def dispatch(provider: str, d: Deps) -> list[Step]:
    """Fill every free slot of the provider with waiting jobs; each gets a submit step."""
    return [Step("submit", job.job_id) for job in d.gate.dispatch(d.config(provider))]


def release(fields: dict[str, str], d: Deps) -> list[Step]:
    """Free the job's slot and hand it straight to the next waiting job."""
    d.gate.release(fields["provider"], fields["key_id"], fields["id"])
    return dispatch(fields["provider"], d)


def fail(
    job_id: str, allowed: tuple[State, ...], exc: VidqueueError, fields: dict[str, str], d: Deps
) -> list[Step]:
    """End the job as failed; the producer's webhook (if any) is the next step."""
    return finish(
        job_id,
        allowed,
        State.FAILED,
        JobError(code=exc.code, message=exc.message),
        fields,
        d,
    )


def finish(
    job_id: str,
    allowed: tuple[State, ...],
    to: State,
    error: JobError | None,
    fields: dict[str, str],
    d: Deps,
    *,
    extra: dict[str, str] | None = None,
    incr: str = "",
    at_provider: bool = False,
) -> list[Step]:
    """Move the job to a terminal state; schedule its webhook when it has a callback_url.

    ``at_provider``: the provider still works on the (cancelled) job, which keeps its slot and
    its poll chain; the webhook then waits until the provider lets go (``_provider_let_go``).
    """
    webhook = bool(json.loads(fields["spec"]).get("callback_url"))
    notify_now = webhook and not at_provider
    moved = d.store.transition(
        job_id,
        allowed,
        to,
        step_s=0 if notify_now or at_provider else None,
        incr=incr,
        fields={
            **(extra or {}),
            "error": error.model_dump_json() if error else "",
            "completed_at": now_iso(),
            "at_provider": "1" if at_provider else "",
            "notify": "pending" if webhook else "",
        },
        event=f"{to}: {error.code}" if error else str(to),
    )
    return [Step("notify", job_id)] if moved and notify_now else []


# -- submit ------------------------------------------------------------------------------


def submit(job_id: str, d: Deps) -> list[Step]:
    """queued → submitting → running, calling the provider exactly once per job."""
    provider_name = d.store.fields(job_id).get("provider")
    if provider_name is None:
        return []
    config = d.config(provider_name)
    lease_s = 2 * config.request_timeout_s + 5
    claim = d.store.claim(job_id, (State.QUEUED, State.SUBMITTING), lease_s=lease_s)
    if not claim.ok or not claim.fields.get("key_id"):
        return []
    fields = claim.fields
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
    return _submitted(job_id, task, config.timeout_s, d)


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


def _submitted(job_id: str, task: ProviderTask, timeout_s: float, d: Deps) -> list[Step]:
    """Persist the provider's task id before anything else, then schedule the first poll."""
    fields = d.store.fields(job_id)
    config = d.config(fields["provider"])
    durations = d.stats.durations(config.name, fields["model"]) if config.adaptive_polling else []
    first = schedule.first_poll(config, durations)
    submitted_at = now_iso()
    learned: dict[str, str | int] = {
        "provider_task_id": task.id,
        "task_extra": json.dumps(task.extra),
        "submitted_at": submitted_at,
        "deadline_ms": int((time.time() + timeout_s) * 1000),
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
    countdown = min(countdown, MAX_COUNTDOWN_S)
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
        return _submitted(job_id, found, config.timeout_s, d)
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


# -- cancel ------------------------------------------------------------------------------


class CancelRefused(VidqueueError):
    """The job is past the point where cancelling means anything (mirroring or finished)."""

    code = "cannot_cancel"


def cancel(job_id: str, d: Deps) -> list[Step]:
    """Cancel a job on the producer's request. Raises ``CancelRefused`` or ``KeyError``.

    A queued job is dropped at once. A job the provider is working on is cancelled at the
    provider where it can be (its slot is then freed); elsewhere it is marked cancelled and
    keeps its slot, polled, until the provider finishes — the provider still counts it.
    Each attempt is a compare-and-set on the state it read; when the job moved on meanwhile
    (a submit finished), the cancel is tried again on its new state.
    """
    for _ in range(5):
        fields = d.store.fields(job_id)
        if not fields:
            raise KeyError(job_id)
        state = State(fields["state"])
        if state == State.CANCELLED:
            return []
        if state in (State.MIRRORING, State.SUCCEEDED, State.FAILED):
            raise CancelRefused(f"job {job_id} is {state}: too late to cancel")
        steps = _cancel_in(state, job_id, fields, d)
        if d.store.fields(job_id).get("state") != state or state == State.SUBMITTING:
            return steps
    raise CancelRefused(f"job {job_id} kept changing state: try again")


def _cancel_in(state: State, job_id: str, fields: dict[str, str], d: Deps) -> list[Step]:
    if state == State.QUEUED:
        return _cancel_queued(job_id, fields, d)
    if state == State.SUBMITTING:
        # The submit in flight finishes first; it sees this flag and cancels right after.
        flagged = d.store.transition(
            job_id,
            (State.SUBMITTING,),
            None,
            fields={"cancel_requested": "1"},
            event="cancel requested",
        )
        return [] if flagged else cancel(job_id, d)
    if state == State.SUBMIT_UNKNOWN:
        return _cancelled(job_id, (State.SUBMIT_UNKNOWN,), fields, d, at_provider=True)
    return cancel_running(job_id, d)


def honour_cancel(job_id: str, d: Deps) -> list[Step]:
    """After a submit leaves ``submitting``: carry out a cancel requested meanwhile."""
    if d.store.fields(job_id).get("cancel_requested"):
        return cancel(job_id, d)
    return []


def _cancel_queued(job_id: str, fields: dict[str, str], d: Deps) -> list[Step]:
    steps = _cancelled(job_id, (State.QUEUED,), fields, d, at_provider=False)
    d.gate.unqueue(fields["provider"], fields["fair"], job_id)
    held = d.store.fields(job_id).get("key_id")
    if held:
        steps += release({**fields, "key_id": held}, d)
    return steps


def cancel_running(job_id: str, d: Deps) -> list[Step]:
    """Mark a running job cancelled at once; a worker then asks the provider to stop it
    (``vidqueue.cancel``: API keys live only in workers). Until the provider lets go, the job
    keeps its slot and its poll chain."""
    fields = d.store.fields(job_id)
    steps = _cancelled(job_id, (State.RUNNING,), fields, d, at_provider=True)
    return [*steps, Step("cancel", job_id)] if steps else []


def cancel_at_provider(job_id: str, d: Deps) -> list[Step]:
    """The worker side of a cancel: where the provider can stop the task, free its slot now."""
    from workers.polling import provider_let_go

    fields = d.store.fields(job_id)
    if fields.get("state") != State.CANCELLED or fields.get("at_provider") != "1":
        return []
    config = d.config(fields["provider"])
    task = ProviderTask(fields["provider_task_id"], json.loads(fields.get("task_extra") or "{}"))
    try:
        d.limiter.take(config, fields["key_id"])
        freed = d.provider(config.name).cancel(task, d.key(config.name, fields["key_id"]))
    except VidqueueError as exc:
        log.warning("job %s: provider cancel failed: %s", job_id, exc.message)
        return []
    return provider_let_go(job_id, fields, d, "cancelled at the provider") if freed else []


def _cancelled(
    job_id: str, allowed: tuple[State, ...], fields: dict[str, str], d: Deps, *, at_provider: bool
) -> list[Step]:
    """Mark the job cancelled. One the provider still counts keeps its slot: with a task id
    it is polled until the provider lets go; without one (submit_unknown) its lease is kept
    until the job's deadline by the sweep."""
    error = JobError(code=CANCELLED, message="cancelled by the producer")
    steps = finish(job_id, allowed, State.CANCELLED, error, fields, d, at_provider=at_provider)
    if at_provider and fields.get("provider_task_id"):
        steps.append(Step("poll", job_id))
    return steps
