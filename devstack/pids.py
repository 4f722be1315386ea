"""Process identity and signals, by pid, without assuming the caller started the process."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group; services lead their own (``start_new_session``), so pgid = pid."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/{pid}/stat`` after the command name, or None where unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot: with the pid, it names one process."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int, expected_start_ticks: int | None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process that started when the record says."""
    fields = proc_stat(pid)
    if fields is not None:
        same = expected_start_ticks is None or int(fields[19]) == expected_start_ticks
        return same and fields[0] != "Z"
    return pid_exists(pid)
