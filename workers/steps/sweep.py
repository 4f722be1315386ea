"""The periodic sweep (Celery beat): repairs what a killed worker left behind.

1. Every expired slot lease is looked at: a job the provider may still be working on keeps
   its slot (renewed), anything else gives it back. Leases are never dropped blindly, so a
   crash can delay work but never push the provider over its cap.
2. The ids of expired (finished, older than the record TTL) records leave the indexes.
3. Every provider's free slots are filled from its waiting set.

Steps that fell due, and steps whose message or worker was lost, are published by the due
pollers that every worker runs (``workers.steps.due``), not here.
"""

from __future__ import annotations

import logging
from typing import Final

from workers.deps import Deps
from workers.domain.messages import Step
from workers.steps.endings import AT_PROVIDER, dispatch

log = logging.getLogger("vidqueue.sweep")

RELEASED: Final = 2


def sweep(d: Deps) -> list[Step]:
    reclaim_leases(d)
    d.store.prune_expired()
    steps: list[Step] = []
    for provider in d.catalogue.providers:
        steps += dispatch(provider, d)
    return steps


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
