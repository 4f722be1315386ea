"""A one-line progress bar for a job, redrawn in place on a terminal (stderr)."""

from __future__ import annotations

import sys
import time
from typing import Final, TextIO

from workers.jobs import JobRecord, State

WIDTH: Final = 30
_FRACTION: Final = {
    State.QUEUED: 0.05,
    State.SUBMITTING: 0.15,
    State.SUBMIT_UNKNOWN: 0.15,
    State.RUNNING: 0.25,
    State.MIRRORING: 0.9,
    State.SUCCEEDED: 1.0,
    State.FAILED: 1.0,
    State.CANCELLED: 1.0,
}


def fraction(record: JobRecord) -> float:
    """Rough progress: running creeps up with each poll, never reaching mirroring's share."""
    base = _FRACTION[record.state]
    if record.state == State.RUNNING:
        base += 0.6 * (1 - 0.8**record.polls)
    return min(base, 1.0)


def bar(record: JobRecord, elapsed_s: float) -> str:
    filled = int(fraction(record) * WIDTH)
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {record.state:<12} {elapsed_s:6.1f}s"


class ProgressLine:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.live = stream.isatty()

    def update(self, record: JobRecord) -> None:
        line = f"{record.id[:12]} {bar(record, time.monotonic() - self.started)}"
        if self.live:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
