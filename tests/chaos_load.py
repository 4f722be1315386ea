"""A loaded machine for ``python -m tests.chaos --load``: CPU hogs, and the load average seen.

Each hog is a busy loop in its own process, one per core by default, busy for ``on_s`` then
idle for ``off_s``, over and over, while the chaos run's faults are on. Bursts rather than a
steady hog: a shared machine's spare CPU comes and goes (other builds, other tests), and the
promises must hold both while the stack has the cores to itself and while it fights for them,
and through the switches between the two, where timeouts and leases are most likely to fire.

The hogs are bounded three ways, so none outlives the run: ``CpuLoad`` is a ``with`` block that
SIGKILLs and reaps them whatever ends it (the phase's end, an error, KeyboardInterrupt); each hog
also exits on its own after ``max_s``; and each exits as soon as its parent is gone, so even a
SIGKILLed chaos run leaves nothing spinning.

The load average (1 min, ``os.getloadavg``) is sampled every second meanwhile, in both modes,
so a loaded run's figures can be read against an unloaded one's. It counts the whole machine:
the stack, the chaos run and anything else running on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

# The hog: busy for on_s, idle for off_s, until max_s is up or its parent is gone. It checks
# its parent only between bursts, so it outlives a dead parent by one burst at most.
HOG: Final = """
import os, sys, time
on_s, off_s, max_s = map(float, sys.argv[1:4])
parent, end = os.getppid(), time.monotonic() + max_s
try:
    while time.monotonic() < end and os.getppid() == parent:
        busy_until = min(end, time.monotonic() + on_s)
        while time.monotonic() < busy_until:
            pass
        time.sleep(off_s)
except KeyboardInterrupt:
    pass
"""
SAMPLE_EVERY_S: Final = 1.0


@dataclass
class LoadSummary:
    """What the machine's load was over the fault phase, and what the hogs added to it."""

    hogs: int = 0
    on_s: float = 0.0
    off_s: float = 0.0
    hog_cpu_s: float = 0.0  # CPU time the hogs used, all together
    samples: list[float] = field(default_factory=list)  # 1-min load average, every second

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0

    def line(self) -> str:
        """One report line: the load average seen, and the hogs behind it if any."""
        seen = f"1-min peak {self.peak:.2f}, mean {self.mean:.2f} over the fault phase"
        if not self.hogs:
            return f"{seen} (no CPU hogs; {os.cpu_count()} cores)"
        return (
            f"{seen} ({self.hogs} CPU hogs on {os.cpu_count()} cores, {self.on_s:g} s on / "
            f"{self.off_s:g} s off: {self.hog_cpu_s:.0f} CPU-s)"
        )


class CpuLoad:
    """``with CpuLoad(hogs, on_s, off_s, max_s) as load:`` hogs the CPU and samples the load
    average inside the block; ``load.summary`` says what was seen. ``hogs=0``: samples only."""

    def __init__(self, hogs: int, on_s: float, off_s: float, max_s: float) -> None:
        self.summary = LoadSummary(hogs=hogs, on_s=on_s, off_s=off_s)
        self.max_s = max_s
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="load-sampler", daemon=True)

    def __enter__(self) -> CpuLoad:
        try:
            for _ in range(self.summary.hogs):
                self._procs.append(self._spawn())
            self._sampler.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill and reap every hog (counting its CPU time first) and stop sampling; safe to
        call twice."""
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join(timeout=5)
        for proc in self._procs:
            self.summary.hog_cpu_s += cpu_seconds(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        self._procs.clear()

    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    def _spawn(self) -> subprocess.Popen[bytes]:
        s = self.summary
        argv = [sys.executable, "-I", "-c", HOG, str(s.on_s), str(s.off_s), str(self.max_s)]
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.summary.samples.append(os.getloadavg()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live (or not yet reaped) process, from ``/proc``; 0 where
    that cannot be read (another OS, already reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 0, utime field 11, stime field 12 (clock ticks).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
