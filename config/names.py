"""The Celery task names and queues: a contract (docs/design.md §6). Producers, operators'
routing (``-Q``) and Flower all rely on them.

They live here, not in ``workers``, so the Celery app (``config.celery``) can route by them
without importing the workers package.
"""

from __future__ import annotations

from typing import Final, Literal

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
