"""The worker side of a cancel (``vidqueue.cancel``): ask the provider to stop the task.

API keys live only in workers, so the producer marks a running job cancelled
(``workers.steps.cancelling``) and this step makes the provider call. Where the provider can
stop the task its slot is freed now; elsewhere the job keeps its slot, polled, until the
provider lets go.
"""

from __future__ import annotations

import logging

from workers.deps import Deps
from workers.domain.errors import VidqueueError
from workers.domain.jobs import State
from workers.domain.messages import Step
from workers.steps.endings import provider_let_go, provider_task

log = logging.getLogger("vidqueue.cancel")


def cancel_at_provider(job_id: str, d: Deps) -> list[Step]:
    """The worker side of a cancel: where the provider can stop the task, free its slot now."""
    row = d.store.row(job_id)
    if row is None or row.state != State.CANCELLED or not row.at_provider:
        return []
    config = d.config(row.provider)
    try:
        d.limiter.take(config, row.slot_key_id)
        key = d.key(config.name, row.slot_key_id)
        freed = d.provider(config.name).cancel(provider_task(row), key)
    except VidqueueError as exc:
        log.warning("job %s: provider cancel failed: %s", job_id, exc.message)
        return []
    return provider_let_go(row, d, "cancelled at the provider") if freed else []
