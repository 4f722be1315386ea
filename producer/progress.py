"""Progress on stderr (rich progress bars: one job, or a batch), and the summary of a batch.

On a terminal the bars redraw in place. Elsewhere (a log, a pipe) no bar is drawn: each change
is one plain line instead (a batch's at most every ``LOG_EVERY_S``, and its last), so a log of
a long wait still shows it moving and ends with where it got to.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from workers.domain.jobs import JobRecord, State, parse_iso

LOG_EVERY_S: Final = 5.0
# For pipes and logs: wide enough that a row (a job id, a URL) never wraps.
PIPE_WIDTH: Final = 200
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


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr): no syntax highlighting, no markup in our text, and
    wide when it is no terminal, so tables never wrap in a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, markup=False, emoji=False, width=width)


def fraction(record: JobRecord) -> float:
    """Rough progress: running creeps up with each poll, never reaching mirroring's share."""
    base = _FRACTION[State(record.state)]
    if record.state == State.RUNNING:
        base += 0.6 * (1 - 0.8**record.polls)
    return min(base, 1.0)


class _Bar:
    """A rich progress bar on stderr, redrawn in place on a terminal. Elsewhere rich would
    draw it once at the end, so it is not drawn: ``log`` lines stand in for it."""

    def __init__(self, *columns: str | ProgressColumn, total: float) -> None:
        err = console(stderr=True)
        self.live = err.is_terminal
        self.progress = Progress(*columns, console=err, disable=not self.live)
        self.task = self.progress.add_task("", total=total, detail="")

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None:  # the bar vanishes: the error stays the one line on stderr
            self.progress.live.transient = True
        self.progress.stop()
        if error is None:
            self.finished()

    def finished(self) -> None:
        return None

    def log(self, line: str) -> None:
        if not self.live:
            self.progress.console.print(line)


class JobProgress(_Bar):
    """One job's bar (``submit --wait``, ``wait``); ``update`` takes each new record. Off a
    terminal, each change of state is one line."""

    def __init__(self) -> None:
        super().__init__(
            TextColumn("job"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            total=1.0,
        )
        self._logged = ""

    def update(self, record: JobRecord) -> None:
        detail = f"{record.id} {record.state}"
        if record.state == State.RUNNING:
            detail += f" (polls {record.polls})"
        self.progress.update(self.task, completed=fraction(record), detail=detail)
        line = f"job {record.id} {record.state}"
        if line != self._logged:
            self._logged = line
            self.log(line)


class BatchProgress(_Bar):
    """A bar for many jobs: done/total plus the count in each state. Off a terminal, a line
    at most every ``LOG_EVERY_S``, and one at the end."""

    def __init__(self, total: int, label: str) -> None:
        super().__init__(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            total=total,
        )
        self.total, self.label = total, label
        self._line = ""
        self._logged_at = -LOG_EVERY_S
        self._started = time.monotonic()

    def update(self, done: int, counts: Mapping[str, int] | None = None) -> None:
        detail = " ".join(f"{state}={n}" for state, n in sorted((counts or {}).items()) if n)
        self.progress.update(self.task, completed=done, detail=detail)
        now = time.monotonic() - self._started
        self._line = f"{self.label} {done}/{self.total} {detail}".rstrip() + f" {now:.1f}s"
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            self.log(self._line)
            self._line = ""

    def finished(self) -> None:
        if self._line:
            self.log(self._line)


def summary(records: Iterable[JobRecord]) -> dict[str, Any]:
    """Counts by state, time from enqueue to the end (p50, p95, max) and failures by code."""
    records = list(records)
    states = Counter(str(r.state) for r in records)
    errors = Counter(r.error.code for r in records if r.error and r.state != State.SUCCEEDED)
    took = sorted(
        (parse_iso(r.completed_at) - parse_iso(r.created_at)).total_seconds()
        for r in records
        if r.state == State.SUCCEEDED and r.completed_at
    )
    times = {}
    if took:
        times = {"p50_s": _pick(took, 0.5), "p95_s": _pick(took, 0.95), "max_s": took[-1]}
    return {
        "total": len(records),
        "states": dict(states),
        "errors": dict(errors),
        "succeeded_time": times,
    }


def _pick(ordered: list[float], quantile: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 2)


def summary_table(report: Mapping[str, Any]) -> Table:
    """The summary as a two-column table: jobs by state, the total, times, errors."""
    table = Table(box=box.SIMPLE_HEAD, title="batch summary", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("jobs", justify="right", no_wrap=True)
    for state, n in sorted(report["states"].items()):
        table.add_row(state, str(n))
    table.add_row("total", str(report["total"]), end_section=True)
    for name, value in report["succeeded_time"].items():
        table.add_row(f"time {name.removesuffix('_s')}", f"{value:.1f}s")
    for code, n in sorted(report["errors"].items(), key=lambda item: -item[1]):
        table.add_row(f"error {code}", str(n))
    return table
