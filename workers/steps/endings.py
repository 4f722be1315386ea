"""What every step does when a job leaves the provider or ends: free its slot (and hand it to
the next waiting job at once), move the job to a terminal state, schedule its webhook. And the
one way a step gets the job's provider task back from its row."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from workers.deps import Deps
from workers.domain.change import Change, CounterName
from workers.domain.errors import VidqueueError
from workers.domain.jobs import JobError, State, now_iso
from workers.domain.messages import Step
from workers.domain.row import JobRow, Notify, PollMode
from workers.providers.base import ProviderTask

# States in which the provider may be working on the job (its slot must stay held).
AT_PROVIDER: Final = (State.SUBMITTING, State.SUBMIT_UNKNOWN, State.RUNNING)


def job_error(exc: VidqueueError, *, retryable: bool = False) -> JobError:
    return JobError(code=exc.code, message=exc.message, retryable=retryable)


def provider_task(row: JobRow) -> ProviderTask:
    """The provider's task for a submitted job (the row keeps its id and ``extra``: the
    domain layer cannot name ``ProviderTask``). A job without one is a broken record."""
    if row.provider_task_id is None:
        raise KeyError(f"job {row.id} has no provider task")
    return ProviderTask(row.provider_task_id, dict(row.task_extra))


def dispatch(provider: str, d: Deps) -> list[Step]:
    """Fill every free slot of the provider with waiting jobs; each gets a submit step."""
    return [Step("submit", job.job_id) for job in d.gate.dispatch(d.config(provider))]


def release(row: JobRow, d: Deps) -> list[Step]:
    """Free the job's slot and hand it straight to the next waiting job."""
    d.gate.release(row.provider, row.slot_key_id, row.id)
    return dispatch(row.provider, d)


def fail(row: JobRow, allowed: tuple[State, ...], exc: VidqueueError, d: Deps) -> list[Step]:
    """End the job as failed; the producer's webhook (if any) is the next step."""
    return finish(row, allowed, State.FAILED, job_error(exc), d)


def finish(
    row: JobRow,
    allowed: tuple[State, ...],
    to: State,
    error: JobError | None,
    d: Deps,
    *,
    change: Change | None = None,
    incr: CounterName = "",
    at_provider: bool = False,
) -> list[Step]:
    """Move the job to a terminal state (with ``change`` too); schedule its webhook when it has
    a callback_url.

    ``at_provider``: the provider still works on the (cancelled) job, which keeps its slot and
    its poll chain; the webhook then waits until the provider lets go (``provider_let_go``).
    """
    webhook = row.callback_url is not None
    notify_now = webhook and not at_provider
    # A succeeded job's poll schedule is over: only an armed callback's mode is still said
    # by its record (callbacks_armed).
    spent = ("poll_mode",) if to == State.SUCCEEDED and row.poll_mode != PollMode.SAFETY else ()
    ending = replace(
        change or Change(),
        error=error,
        completed_at=now_iso(),
        at_provider=at_provider,
        notify=Notify.PENDING if webhook else None,
    )
    moved = d.store.transition(
        row.id,
        allowed,
        to,
        step_s=0 if notify_now or at_provider else None,
        incr=incr,
        change=ending,
        event=f"{to}: {error.code}" if error else str(to),
        spent=spent,
    )
    if moved:
        d.stats.count_ended(to)
    return [Step("notify", row.id)] if moved and notify_now else []


def provider_let_go(row: JobRow, d: Deps, why: str) -> list[Step]:
    """A cancelled job's provider task ended: free the slot, and send the held-back webhook."""
    webhook = row.notify == Notify.PENDING
    moved = d.store.transition(
        row.id,
        (State.CANCELLED,),
        None,
        step_s=0 if webhook else None,
        clear_step=not webhook,
        incr="polls",
        change=Change(at_provider=False, provider_finished_at=now_iso()),
        event=why,
    )
    steps = [Step("notify", row.id)] if moved and webhook else []
    return steps + release(row, d)
