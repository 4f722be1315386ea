"""What the pipeline asks to run next, and how that becomes a Celery message.

Task names and queues are a contract (docs/design.md §6), kept in ``config.names``.
Messages carry the job id only — never prompts, images or keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from config.names import QUEUES, TASKS, StepName

# The message header that says when a step was published (unix ms): a due poller compares it
# with a job's ``sent`` time to tell a message still waiting in its queue from a lost one.
SENT_HEADER: Final = "vq_sent"


@dataclass(frozen=True)
class Step:
    """The next step of a job. ``countdown_s`` > 0: the step is scheduled in Redis (the due
    zset, written by the transition that returned it) and a due poller publishes it when it
    falls due; it is never a countdown message parked in a worker (docs/design.md §3)."""

    task: StepName
    job_id: str
    countdown_s: float = 0.0
    # The message's broker priority where order matters (mirrors: by URL expiry, see
    # ``schedule.mirror_priority``); None leaves the default, 0 (first) on Redis.
    priority: int | None = None


def send(app: Any, steps: Iterable[Step]) -> int:
    """Publish each step that is due now as a task message (by name: no task code needs
    importing), through one producer; scheduled steps are left to the due pollers.
    Returns how many messages were published."""
    now = [step for step in steps if step.countdown_s <= 0]
    if not now:
        return 0
    headers = {SENT_HEADER: int(time.time() * 1000)}
    with app.producer_or_acquire() as producer:
        for step in now:
            options: dict[str, Any] = {"queue": QUEUES[step.task], "headers": headers}
            if step.priority is not None:
                options["priority"] = step.priority
            app.send_task(TASKS[step.task], args=[step.job_id], producer=producer, **options)
    return len(now)
