"""Waiting for jobs to finish: the polling loop the sync client's ``wait`` and ``wait_many`` share.

Each round reads every unfinished job in one Redis round trip (``read``), so waiting for a
thousand jobs costs one request per round, not a thousand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from workers.domain.errors import JobNotFound
from workers.domain.jobs import TERMINAL, JobRecord

# Reads the records of the given job ids, None where a job is gone.
Read = Callable[[list[str]], list[JobRecord | None]]
OnChange = Callable[[JobRecord], None]


class _Seen:
    """The latest record of each job, and whether ``on_change`` has seen its news."""

    def __init__(self, on_change: OnChange | None) -> None:
        self.on_change = on_change
        self.latest: dict[str, JobRecord] = {}
        self._told: dict[str, tuple[str, int]] = {}

    def update(self, job_ids: list[str], records: list[JobRecord | None]) -> None:
        for job_id, record in zip(job_ids, records, strict=True):
            if record is None:
                raise JobNotFound(job_id)
            self.latest[job_id] = record
            news = (str(record.state), record.polls)
            if self.on_change and self._told.get(job_id) != news:
                self._told[job_id] = news
                self.on_change(record)


def wait_for(
    read: Read,
    job_ids: Sequence[str],
    *,
    timeout_s: float,
    interval_s: float,
    on_change: OnChange | None = None,
) -> list[JobRecord]:
    """Block until every job is terminal; the records come back in the order asked.
    ``JobNotFound`` for a job that is (or becomes) unknown; ``TimeoutError`` naming the
    states still pending after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    seen = _Seen(on_change)
    pending = list(dict.fromkeys(job_ids))
    while True:
        seen.update(pending, read(pending))
        pending = [i for i in pending if seen.latest[i].state not in TERMINAL]
        if not pending:
            return [seen.latest[i] for i in job_ids]
        if time.monotonic() >= deadline:
            states = sorted({str(seen.latest[i].state) for i in pending})
            raise TimeoutError(
                f"{len(pending)} job(s) not finished after {timeout_s:.0f}s: {states}"
            )
        time.sleep(interval_s)
