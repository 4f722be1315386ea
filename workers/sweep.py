"""The periodic sweep (Celery beat): repairs what a lossy broker or a killed worker dropped.

1. Every job whose next step is overdue by more than the grace gets that step re-sent. The
   step's claim makes a re-send harmless when the original message turns up after all.
2. Every expired slot lease is looked at: a job the provider may still be working on keeps
   its slot (renewed), anything else gives it back. Leases are never dropped blindly, so a
   crash can delay work but never push the provider over its cap.
3. The ids of expired (finished, older than the record TTL) records leave the indexes.
4. Every provider's free slots are filled from its waiting set.
"""

from __future__ import annotations

import logging
from typing import Final

from workers import keys, schedule
from workers.deps import Deps
from workers.jobs import State, parse_iso
from workers.outcomes import AT_PROVIDER, dispatch
from workers.steps import Step, StepName

log = logging.getLogger("vidqueue.sweep")

RELEASED: Final = 2
STEP_OF: Final[dict[State, StepName]] = {
    State.QUEUED: "submit",
    State.SUBMITTING: "submit",
    State.RUNNING: "poll",
    State.MIRRORING: "mirror",
}


def step_for(fields: dict[str, str]) -> StepName | None:
    """The step an overdue job is waiting for, or None if it waits for nothing."""
    state = State(fields["state"])
    if state in STEP_OF:
        if STEP_OF[state] == "submit" and not fields.get("key_id"):
            return None
        return STEP_OF[state]
    if state == State.CANCELLED and fields.get("at_provider") == "1":
        # Polled until the provider lets go; without a task id the lease waits for the deadline.
        return "poll" if fields.get("provider_task_id") else None
    return "notify" if fields.get("notify") == "pending" else None


def sweep(d: Deps) -> list[Step]:
    steps = resend_overdue(d)
    reclaim_leases(d)
    d.store.prune_expired()
    for provider in d.catalogue.providers:
        steps += dispatch(provider, d)
    return steps


def resend_overdue(d: Deps) -> list[Step]:
    steps: list[Step] = []
    for job_id in d.store.overdue():
        fields = d.store.fields(job_id)
        if not fields:
            d.redis.zrem(keys.due(), job_id)
            continue
        state = State(fields["state"])
        if state == State.SUBMIT_UNKNOWN:
            _give_up_slot(job_id, fields, d)
            continue
        step = step_for(fields)
        if step is None:
            d.store.transition(job_id, (state,), None, clear_step=True)
        elif d.store.mark_resent(job_id, state, step):
            # Claimable now, and due again only after another grace period.
            log.info("job %s: %s overdue, re-sent", job_id, step)
            steps.append(Step(step, job_id, priority=_urgency(step, fields, d)))
    return steps


def _urgency(step: StepName, fields: dict[str, str], d: Deps) -> int | None:
    """A re-sent mirror keeps its place by URL expiry; other steps need no priority."""
    if step != "mirror":
        return None
    seen = fields.get("provider_finished_at")
    finished_at = parse_iso(seen).timestamp() if seen else None
    return schedule.mirror_priority(d.config(fields["provider"]).result_url_ttl_s, finished_at)


def _give_up_slot(job_id: str, fields: dict[str, str], d: Deps) -> None:
    """A submit_unknown job past its provider deadline no longer counts at the provider."""
    if fields.get("key_id"):
        d.gate.release(fields["provider"], fields["key_id"], job_id)
    d.store.transition(
        job_id, (State.SUBMIT_UNKNOWN,), None, clear_step=True, fields={"at_provider": ""}
    )


def reclaim_leases(d: Deps) -> int:
    """Renew the expired leases of jobs still at the provider; release the rest."""
    at_provider = ",".join(["", *AT_PROVIDER, ""])
    released = 0
    for name, config in d.catalogue.providers.items():
        for key_id in config.key_ids():
            for job_id in d.gate.expired(name, key_id):
                if d.gate.reclaim(name, key_id, job_id, at_provider) == RELEASED:
                    released += 1
                    log.warning("released the expired slot of job %s (%s)", job_id, name)
    return released
