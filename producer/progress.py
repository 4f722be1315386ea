"""Progress bars on stderr (one job, or many), and the summary of a finished batch."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO

from workers.domain.jobs import JobRecord, State, parse_iso

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


class CountBar:
    """A bar for many jobs: ``done/total`` plus counts by state; redrawn in place on a terminal,
    at most every ``every_s`` elsewhere (a log stays short)."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr, every_s: float = 2.0):
        self.total, self.label, self.stream = total, label, stream
        self.started = time.monotonic()
        self.live = stream.isatty()
        self.every_s = every_s
        self._shown = 0.0

    def update(
        self, done: int, counts: Mapping[str, int] | None = None, *, force: bool = False
    ) -> None:
        now = time.monotonic() - self.started
        if not (self.live or force or now - self._shown >= self.every_s):
            return
        self._shown = now
        filled = int(WIDTH * done / self.total) if self.total else WIDTH
        parts = " ".join(f"{state}={n}" for state, n in sorted((counts or {}).items()) if n)
        drawn = "#" * filled + "." * (WIDTH - filled)
        line = f"{self.label} [{drawn}] {done}/{self.total} {parts} {now:6.1f}s"
        self.stream.write(("\r" + line + "\x1b[K") if self.live else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")


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


def summary_table(report: Mapping[str, Any]) -> str:
    """The summary as an aligned text table."""
    rows = [("state", "jobs")]
    rows += [(state, str(n)) for state, n in sorted(report["states"].items())]
    rows.append(("total", str(report["total"])))
    for name, value in report["succeeded_time"].items():
        rows.append((f"time {name.removesuffix('_s')}", f"{value:.1f}s"))
    for code, n in sorted(report["errors"].items(), key=lambda item: -item[1]):
        rows.append((f"error {code}", str(n)))
    width = max(len(left) for left, _ in rows)
    lines = [f"{left:<{width}}  {right:>8}" for left, right in rows]
    lines.insert(1, "-" * (width + 10))
    return "\n".join(lines)
