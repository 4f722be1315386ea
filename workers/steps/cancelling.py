"""Cancelling a job on the producer's request.

A queued job is dropped at once. A job the provider is working on is marked cancelled at once;
a worker then asks the provider to stop it (``vidqueue.cancel``: API keys live only in workers).
Where the provider can, its slot is freed; elsewhere the job keeps its slot, polled, until the
provider lets go — the provider still counts it.
"""

from __future__ import annotations

import logging

from workers.deps import Deps
from workers.domain.errors import CANCELLED, CancelRefused
from workers.domain.jobs import JobError, State
from workers.domain.messages import Step
from workers.steps.endings import finish, release

log = logging.getLogger("vidqueue.cancel")


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
    if d.store.cancel_requested(job_id):
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
