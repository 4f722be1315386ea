"""The worker side of a cancel (``vidqueue.cancel``): ask the provider to stop the task.

API keys live only in workers, so the producer marks a running job cancelled
(``workers.steps.cancelling``) and this step makes the provider call. Where the provider can
stop the task its slot is freed now; elsewhere the job keeps its slot, polled, until the
provider lets go.
"""

from __future__ import annotations

import json
import logging

from workers.deps import Deps
from workers.domain.errors import VidqueueError
from workers.domain.jobs import State
from workers.domain.messages import Step
from workers.providers.base import ProviderTask
from workers.steps.endings import provider_let_go

log = logging.getLogger("vidqueue.cancel")


def cancel_at_provider(job_id: str, d: Deps) -> list[Step]:
    """The worker side of a cancel: where the provider can stop the task, free its slot now."""
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
