"""The periodic sweep (Celery beat): repairs what a killed worker left behind.

1. Every expired slot lease is looked at: a job the provider may still be working on keeps
   its slot (renewed), anything else gives it back. Leases are never dropped blindly, so a
   crash can delay work but never push the provider over its cap. A ``submit_unknown`` job
   keeps its slot only until its hold runs out (``hold_until_ms``, set when it was parked:
   the model's learned p99 generation time plus a margin, at most the provider's deadline);
   then its slot is released, counted, and the job stays ``submit_unknown`` with the risk
   that the provider bills it anyway written down (an event and ``slot_released_at``).
2. The ids of expired (finished, older than the record TTL) records leave the indexes.
3. Every provider's free slots are filled from its waiting set.
4. Finished jobs past the hot window move to the S3 archive (``workers.steps.archive``).
5. Every few minutes, multipart uploads abandoned under vidqueue's prefix are aborted
   (``workers.steps.hygiene``).

Steps that fell due, and steps whose message or worker was lost, are published by the due
pollers that every worker runs (``workers.steps.due``), not here.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from workers.deps import Deps
from workers.domain.change import Change
from workers.domain.jobs import State, now_iso
from workers.domain.messages import Step
from workers.steps.archive import archive
from workers.steps.endings import AT_PROVIDER, dispatch
from workers.steps.hygiene import clean_storage

log = logging.getLogger("vidqueue.sweep")

RELEASED: Final = 2
HELD_OVER: Final = 3


def sweep(d: Deps) -> list[Step]:
    reclaim_leases(d)
    d.store.prune_expired()
    steps: list[Step] = []
    for provider in d.catalogue.providers:
        steps += dispatch(provider, d)
    archive(d)
    clean_storage(d)
    return steps


def reclaim_leases(d: Deps) -> int:
    """Renew the expired leases of jobs still at the provider; release the rest (and those of
    submit_unknown jobs whose hold ran out)."""
    at_provider = ",".join(["", *AT_PROVIDER, ""])
    released = 0
    for name, config in d.catalogue.providers.items():
        for key_id in config.key_ids():
            for job_id in d.gate.expired(name, key_id):
                outcome = d.gate.reclaim(name, key_id, job_id, at_provider, State.SUBMIT_UNKNOWN)
                if outcome == RELEASED:
                    released += 1
                    log.warning("released the expired slot of job %s (%s)", job_id, name)
                elif outcome == HELD_OVER:
                    released += 1
                    _held_over(d, job_id)
    return released


def _held_over(d: Deps, job_id: str) -> None:
    """The submit_unknown job's slot went back at its hold's end: say so on the job, which
    stays submit_unknown (nothing is left to schedule: its slot was all it waited for)."""
    row = d.store.row(job_id)
    since = row.hold_since_ms if row is not None else 0
    held = f" after {(time.time() * 1000 - since) / 1000:.0f}s" if since else ""
    event = f"slot released{held}; the provider may still bill this job"
    d.store.transition(
        job_id,
        (State.SUBMIT_UNKNOWN,),
        None,
        clear_step=True,
        change=Change(at_provider=False, slot_released_at=now_iso()),
        event=event,
    )
    log.warning("job %s (submit_unknown): %s", job_id, event)
