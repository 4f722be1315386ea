"""Cancelling a job on the producer's request.

A queued job is dropped at once. A job the provider is working on is marked cancelled at once;
a worker then asks the provider to stop it (``vidqueue.cancel``: API keys live only in workers).
Where the provider can, its slot is freed; elsewhere the job keeps its slot, polled, until the
provider lets go — the provider still counts it.

A cancel that comes while a submit is in flight only flags the job; ``honour_cancel`` is the
one place a step checks that flag (the submit, each time it leaves ``submitting``).
"""

from __future__ import annotations

import logging

from workers.deps import Deps
from workers.domain.change import Change
from workers.domain.errors import CANCELLED, CancelRefused, JobNotFound
from workers.domain.jobs import JobError, State
from workers.domain.messages import Step
from workers.domain.row import JobRow
from workers.steps.endings import finish, release

log = logging.getLogger("vidqueue.cancel")


def cancel(job_id: str, d: Deps) -> list[Step]:
    """Cancel a job on the producer's request. Raises ``CancelRefused`` or ``JobNotFound``.

    A queued job is dropped at once. A job the provider is working on is cancelled at the
    provider where it can be (its slot is then freed); elsewhere it is marked cancelled and
    keeps its slot, polled, until the provider finishes — the provider still counts it.
    Each attempt is a compare-and-set on the state it read; when the job moved on meanwhile
    (a submit finished), the cancel is tried again on its new state.
    """
    for _ in range(5):
        row = d.store.row(job_id)
        if row is None:
            raise JobNotFound(job_id)
        state = row.state
        if state == State.CANCELLED:
            return []
        if state in (State.MIRRORING, State.SUCCEEDED, State.FAILED):
            raise CancelRefused(f"job {job_id} is {state}: too late to cancel")
        steps = _cancel_in(row, d)
        now = d.store.row(job_id)
        if now is None or now.state != state or state == State.SUBMITTING:
            return steps
    raise CancelRefused(f"job {job_id} kept changing state: try again")


def _cancel_in(row: JobRow, d: Deps) -> list[Step]:
    if row.state == State.QUEUED:
        return _cancel_queued(row, d)
    if row.state == State.SUBMITTING:
        # The submit in flight finishes first; it sees this flag and cancels right after.
        flagged = d.store.transition(
            row.id,
            (State.SUBMITTING,),
            None,
            change=Change(cancel_requested=True),
            event="cancel requested",
        )
        return [] if flagged else cancel(row.id, d)
    if row.state == State.SUBMIT_UNKNOWN:
        return _cancelled(row, (State.SUBMIT_UNKNOWN,), d, at_provider=True)
    return cancel_running(row.id, d)


def honour_cancel(job_id: str, d: Deps) -> list[Step]:
    """After a submit leaves ``submitting``: carry out a cancel requested meanwhile."""
    if d.store.cancel_requested(job_id):
        return cancel(job_id, d)
    return []


def _cancel_queued(row: JobRow, d: Deps) -> list[Step]:
    steps = _cancelled(row, (State.QUEUED,), d, at_provider=False)
    d.gate.unqueue(row.provider, row.fair, row.id)
    # Dispatch may have given the job a slot since it was read: free the one it holds now.
    held = d.store.row(row.id)
    if held is not None and held.key_id:
        steps += release(held, d)
    return steps


def cancel_running(job_id: str, d: Deps) -> list[Step]:
    """Mark a running job cancelled at once; a worker then asks the provider to stop it
    (``vidqueue.cancel``: API keys live only in workers). Until the provider lets go, the job
    keeps its slot and its poll chain."""
    row = d.store.row(job_id)
    if row is None:
        raise JobNotFound(job_id)
    steps = _cancelled(row, (State.RUNNING,), d, at_provider=True)
    return [*steps, Step("cancel", job_id)] if steps else []


def _cancelled(
    row: JobRow, allowed: tuple[State, ...], d: Deps, *, at_provider: bool
) -> list[Step]:
    """Mark the job cancelled. One the provider still counts keeps its slot: with a task id
    it is polled until the provider lets go; without one (submit_unknown) its lease is kept
    until the job's deadline by the sweep."""
    error = JobError(code=CANCELLED, message="cancelled by the producer")
    steps = finish(row, allowed, State.CANCELLED, error, d, at_provider=at_provider)
    if at_provider and row.provider_task_id:
        steps.append(Step("poll", row.id))
    return steps
