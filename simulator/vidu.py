"""Vidu's callback, as Vidu POSTs it when a gateway's Vidu channel passes ``callback_url`` on.

The simulator serves no Vidu API of its own (Zhipu hosts Vidu models in its own format); this is
only the body Vidu's own platform sends to a ``callback_url``: ``{"id", "state", "creations"}``.
While the generation runs the state is ``created`` for its first ``CREATED_SHARE``, ``queueing``
until ``QUEUED_SHARE``, then ``processing``; it ends ``success`` (with ``creations``: the video
and its cover) or ``failed``, exactly when a poll of the task says it ended.
"""

from __future__ import annotations

from typing import Final

from simulator.callbacks import Render
from simulator.media import issue_urls
from simulator.state import Registry, Task, TaskState

CREATED_SHARE: Final = 0.1
QUEUED_SHARE: Final = 0.2
SHARES: Final = (CREATED_SHARE, QUEUED_SHARE)


def state(task: Task, registry: Registry) -> str:
    """Vidu's word for the task's state now."""
    current = registry.state(task)
    if current is TaskState.SUCCEEDED:
        return "success"
    if current is not TaskState.RUNNING:
        return "failed"
    progress = registry.progress(task)
    if progress < CREATED_SHARE:
        return "created"
    return "queueing" if progress < QUEUED_SHARE else "processing"


def callback_render(base_url: str, registry: Registry) -> Render:
    """What Vidu POSTs to a ``callback_url``: id, state and, once it succeeded, the creations."""

    def render(task: Task) -> tuple[str, object]:
        word = state(task, registry)
        body: dict[str, object] = {"id": task.id, "state": word}
        if word == "success":
            urls = issue_urls(base_url, task, registry)
            body["creations"] = [{"url": urls.video, "cover_url": urls.cover}]
        return word, body

    return render
