"""What vidqueue adds to every Celery worker's start-up: its due poller (``workers.steps.due``).

Registered in ``config.celery`` by name, so the Celery app never imports the workers package.
"""

from __future__ import annotations

from typing import Any, ClassVar

from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool

from workers import tasks
from workers.steps.due import DuePoller


class DuePollerStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs a ``DuePoller`` in every worker (``celery -A workers worker``), in its main process."""

    requires: ClassVar = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.poller: DuePoller | None = None

    def start(self, parent: Any) -> None:
        if not isinstance(parent.pool, PreforkPool):
            # Tasks run in this process (--pool threads): build their clients now, not on the
            # first task (prefork children build theirs as they start: tasks._warm_up).
            tasks.warm_up_here()
        self.poller = DuePoller(tasks.fresh_deps, parent.app)
        self.poller.start()

    def stop(self, parent: Any) -> None:
        if self.poller is not None:
            self.poller.stop()
