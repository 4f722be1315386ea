"""What every step does when a job leaves the provider or ends: free its slot (and hand it to
the next waiting job at once), move the job to a terminal state, schedule its webhook."""

from __future__ import annotations

import json
from typing import Final

from workers.deps import Deps
from workers.domain.errors import VidqueueError
from workers.domain.jobs import JobError, State, now_iso
from workers.domain.messages import Step

# States in which the provider may be working on the job (its slot must stay held).
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
    its poll chain; the webhook then waits until the provider lets go (``provider_let_go``).
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


def provider_let_go(job_id: str, fields: dict[str, str], d: Deps, why: str) -> list[Step]:
    """A cancelled job's provider task ended: free the slot, and send the held-back webhook."""
    webhook = fields.get("notify") == "pending"
    moved = d.store.transition(
        job_id,
        (State.CANCELLED,),
        None,
        step_s=0 if webhook else None,
        clear_step=not webhook,
        incr="polls",
        fields={"at_provider": "", "provider_finished_at": now_iso()},
        event=why,
    )
    steps = [Step("notify", job_id)] if moved and webhook else []
    return steps + release(fields, d)
