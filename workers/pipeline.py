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
from workers import schedule
from workers.deps import Deps
from workers.errors import (
    SUBMIT_UNKNOWN,
    TIMEOUT,
    DuplicateSubmission,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.jobs import JobError, JobSpec, ProviderStatus, State, now_iso
from workers.providers.base import PollResult, ProviderTask
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
) -> list[Step]:
    """Move the job to a terminal state; schedule its webhook when it has a callback_url."""
    webhook = bool(json.loads(fields["spec"]).get("callback_url"))
    moved = d.store.transition(
        job_id,
        allowed,
        to,
        step_s=0 if webhook else None,
        incr=incr,
        fields={
            **(extra or {}),
            "error": error.model_dump_json() if error else "",
            "completed_at": now_iso(),
            "at_provider": "",
            "notify": "pending" if webhook else "",
        },
        event=f"{to}: {error.code}" if error else str(to),
    )
    return [Step("notify", job_id)] if moved and webhook else []


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
    key = d.key(config.name, fields["key_id"])
    try:
        task = provider.submit(job_id, spec, key)
    except DuplicateSubmission as exc:
        return _outcome_unknown(job_id, fields, d, exc.message)
    except SubmitOutcomeUnknown as exc:
        # The provider dedupes on the job id: re-sending is safe, and tells us the outcome.
        log.warning("job %s: %s; re-sending with the same request id", job_id, exc.message)
        countdown = schedule.retry_backoff(int(fields.get("attempts", "0")))
        d.store.transition(job_id, (State.SUBMITTING,), None, step_s=countdown)
        return [Step("submit", job_id, countdown)]
    except RetryableError as exc:
        return _submit_later(job_id, fields, exc, d)
    except PermanentError as exc:
        return fail(job_id, (State.SUBMITTING,), exc, fields, d) + release(fields, d)
    return _submitted(job_id, task, config.timeout_s, d)


def _requeue(job_id: str, fields: dict[str, str], d: Deps) -> list[Step]:
    moved = d.store.transition(
        job_id, (State.QUEUED,), None, clear_step=True, fields={"key_id": ""}, event="requeued"
    )
    if moved:
        d.store.requeue(job_id, fields["provider"], fields["score"])
    return dispatch(fields["provider"], d)


def _submitted(job_id: str, task: ProviderTask, timeout_s: float, d: Deps) -> list[Step]:
    config = d.config(d.store.fields(job_id)["provider"])
    first = schedule.first_poll(config)
    d.store.transition(
        job_id,
        (State.SUBMITTING,),
        State.RUNNING,
        step_s=first,
        fields={
            "provider_task_id": task.id,
            "task_extra": json.dumps(task.extra),
            "submitted_at": now_iso(),
            "deadline_ms": int((time.time() + timeout_s) * 1000),
            "at_provider": "1",
            "error": "",
        },
        event="running",
    )
    return [Step("poll", job_id, first)]


def _submit_later(job_id: str, fields: dict[str, str], exc: RetryableError, d: Deps) -> list[Step]:
    """The provider certainly did not accept the request: keep the slot, try again later."""
    attempts = int(fields.get("attempts", "0")) + 1
    if attempts >= MAX_SUBMIT_ATTEMPTS:
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
    return [Step("submit", job_id, countdown)]


def _outcome_unknown(job_id: str, fields: dict[str, str], d: Deps, why: str) -> list[Step]:
    """Park the job for reconciliation. Its slot stays held until the provider's deadline,
    since the provider may be generating it; the sweep frees the slot after that."""
    config = d.config(fields["provider"])
    exc = SubmitOutcomeUnknown(f"{config.name}: {why}")
    d.store.transition(
        job_id,
        (State.SUBMITTING,),
        State.SUBMIT_UNKNOWN,
        step_s=config.timeout_s,
        fields={"error": error_json(exc), "at_provider": "1"},
        event=SUBMIT_UNKNOWN,
    )
    log.error("job %s parked as submit_unknown: %s", job_id, why)
    return []


# -- poll --------------------------------------------------------------------------------


def poll(job_id: str, d: Deps) -> list[Step]:
    """Ask the provider how the job is doing; on a terminal status free the slot at once."""
    provider_name = d.store.fields(job_id).get("provider")
    if provider_name is None:
        return []
    config = d.config(provider_name)
    # The lease covers one HTTP call: a poll killed mid-call is re-sent soon after.
    claim = d.store.claim(job_id, (State.RUNNING,), lease_s=config.request_timeout_s + 10)
    if not claim.ok:
        return []
    fields = claim.fields
    remaining_s = int(fields.get("deadline_ms", "0")) / 1000 - time.time()
    if remaining_s <= 0:
        exc = PermanentError(f"{config.name}: not finished after {config.timeout_s:.0f}s")
        exc.code = TIMEOUT
        return fail(job_id, (State.RUNNING,), exc, fields, d) + release(fields, d)
    d.gate.renew(config.name, fields["key_id"], job_id)
    task = ProviderTask(fields["provider_task_id"], json.loads(fields.get("task_extra") or "{}"))
    polls = int(fields.get("polls", "0")) + 1
    try:
        result = d.provider(config.name).poll(task, d.key(config.name, fields["key_id"]))
    except RetryableError as exc:
        hint = exc.retry_after_s or schedule.next_poll(config, polls, remaining_s=remaining_s)
        return _poll_again(job_id, hint, d, event=f"poll error: {exc.code}")
    except PermanentError as exc:
        return fail(job_id, (State.RUNNING,), exc, fields, d) + release(fields, d)
    if result.status in (ProviderStatus.QUEUED, ProviderStatus.RUNNING):
        delay = schedule.next_poll(
            config, polls, hint_s=result.poll_after_s, remaining_s=remaining_s
        )
        return _poll_again(job_id, delay, d)
    return _finished(job_id, fields, result, d)


def _poll_again(job_id: str, countdown: float, d: Deps, *, event: str = "") -> list[Step]:
    moved = d.store.transition(
        job_id, (State.RUNNING,), None, step_s=countdown, incr="polls", event=event
    )
    return [Step("poll", job_id, countdown)] if moved else []


def _finished(job_id: str, fields: dict[str, str], result: PollResult, d: Deps) -> list[Step]:
    """Record what the provider said (first), then free the slot (second)."""
    seen = {"provider_finished_at": now_iso(), "at_provider": ""}
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
        steps = [Step("mirror", job_id)] if moved else []
    else:
        to = State.CANCELLED if result.status == ProviderStatus.CANCELLED else State.FAILED
        error = JobError(
            code=result.error_code or "provider_failed",
            message=result.error_message or f"the provider reported {result.raw_status}",
        )
        steps = finish(job_id, (State.RUNNING,), to, error, fields, d, extra=seen, incr="polls")
    return steps + release(fields, d)
