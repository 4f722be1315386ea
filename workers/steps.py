"""What the pipeline asks to run next, and how that becomes a Celery message.

Task names and queues are a contract (DESIGN.md §6): producers and operators rely on them.
Messages carry the job id only — never prompts, images or keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

StepName = Literal["submit", "poll", "mirror", "notify", "cancel"]

TASKS: Final[dict[str, str]] = {
    "submit": "vidqueue.submit",
    "poll": "vidqueue.poll",
    "mirror": "vidqueue.mirror",
    "notify": "vidqueue.notify",
    "sweep": "vidqueue.sweep",
    "cancel": "vidqueue.cancel",
}
# Each step has its own queue, so operators can give mirroring its own workers: result URLs
# expire, and mirroring must never wait behind a backlog of submits. A cancel is one cheap
# provider call, like a poll, and shares the poll queue.
QUEUES: Final[dict[str, str]] = {name: name for name in TASKS if name != "cancel"}
QUEUES["cancel"] = "poll"


@dataclass(frozen=True)
class Step:
    task: StepName
    job_id: str
    countdown_s: float = 0.0
    # The message's broker priority where order matters (mirrors: by URL expiry, see
    # ``schedule.mirror_priority``); None leaves the default, 0 (first) on Redis.
    priority: int | None = None


def send(app: Any, steps: Iterable[Step]) -> None:
    """Publish each step as a task message (by name: no task code needs importing)."""
    for step in steps:
        countdown = step.countdown_s if step.countdown_s > 0 else None
        options: dict[str, Any] = {"queue": QUEUES[step.task], "countdown": countdown}
        if step.priority is not None:
            options["priority"] = step.priority
        app.send_task(TASKS[step.task], args=[step.job_id], **options)
