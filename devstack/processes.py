"""Background services with PID records and log files inside a run directory.

Layout under ``run_dir``: ``pids/{name}.json`` (pid, address, process start time, stop timeout)
and ``logs/{name}.log`` (stdout and stderr, appended across restarts). Every service runs in its
own session and process group, so stopping it also ends whatever it forked.

A record is trusted only while its pid still belongs to the process that was started (the
kernel's start time of the pid is checked where ``/proc`` exists), so a stale record after a
reboot reads as stopped instead of killing an unrelated process.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.pids import pid_alive, pid_exists, signal_group, signal_pid, start_ticks
from devstack.ports import port_is_free

LOG_TAIL_LINES = 40


class ServiceError(Exception):
    """A service could not be managed as asked (already running, missing binary...)."""


class StartError(ServiceError):
    """A service did not become ready; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Launch:
    """One start of a service, as its readiness probe sees it."""

    pid: int
    log_path: Path
    log_offset: int
    started: float = field(default_factory=time.monotonic)

    def alive_for(self) -> float:
        return time.monotonic() - self.started

    def log_since_start(self) -> str:
        """What the service logged since this start (earlier runs' lines are ignored)."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode("utf-8", "replace")


Probe = Callable[[Launch], bool]


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    ready: Probe
    env: Mapping[str, str]
    cwd: Path
    address: str = ""
    port: int | None = None
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    # Files the service may leave behind (stale sockets), removed once it has stopped.
    leftovers: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    log: Path

    @property
    def state(self) -> str:
        return "running" if self.running else "stopped"


class ProcessManager:
    """Starts, stops and reports the services recorded in one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pids_dir = run_dir / "pids"
        self.logs_dir = run_dir / "logs"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def start(self, spec: ServiceSpec) -> ServiceStatus:
        """Start ``spec`` and wait until its probe passes; on failure nothing is left running."""
        if self.is_running(spec.name):
            raise ServiceError(f"{spec.name} is already running (pid {self._pid(spec.name)})")
        if spec.port is not None and not port_is_free(spec.port):
            raise StartError(
                f"{spec.name}: port 127.0.0.1:{spec.port} is already in use "
                "(another stack or server? the VIDQUEUE_* settings choose the ports)"
            )
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        launch = self._spawn(spec)
        self._write_record(spec, launch.pid)
        self._await_ready(spec, launch)
        return self.status(spec.name)

    def stop(self, name: str, timeout_s: float | None = None) -> None:
        """SIGTERM the service, SIGKILL it after the timeout, then sweep its process group."""
        record = self._read_record(name)
        if record is None:
            return
        pid = int(record["pid"])
        ours = self._alive(name, record)
        if ours:
            signal_pid(pid, signal.SIGTERM)
            timeout = timeout_s if timeout_s is not None else float(record["stop_timeout_s"])
            if not self._wait_dead(name, record, timeout):
                signal_group(pid, signal.SIGKILL)
                self._wait_dead(name, record, 5.0)
        # Leftover members of its group (e.g. pool processes of a crashed worker). A pid that now
        # belongs to another process is left alone; the kernel never hands out a pid still used
        # as a group id, so with the leader gone, group ``pid`` can only be the service's.
        if ours or not pid_exists(pid):
            signal_group(pid, signal.SIGKILL)
        self._forget(name)

    def kill(self, name: str, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Send ``sig`` (to the whole process group by default), as a crash or an operator would.

        After SIGKILL the service is reaped and its record removed, so it reads as stopped.
        """
        record = self._read_record(name)
        if record is None or not self._alive(name, record):
            raise ServiceError(f"{name} is not running")
        pid = int(record["pid"])
        if group:
            signal_group(pid, sig)
        else:
            signal_pid(pid, sig)
        if sig == signal.SIGKILL:
            self._wait_dead(name, record, 10.0)
            self._forget(name)

    def is_running(self, name: str) -> bool:
        record = self._read_record(name)
        return record is not None and self._alive(name, record)

    def status(self, name: str) -> ServiceStatus:
        record = self._read_record(name)
        running = record is not None and self._alive(name, record)
        return ServiceStatus(
            name=name,
            running=running,
            pid=int(record["pid"]) if record and running else None,
            address=str(record["address"]) if record else "",
            log=self.log_path(name),
        )

    def names(self) -> list[str]:
        """Recorded services, oldest start first."""
        started: list[tuple[float, str]] = []
        for path in self.pids_dir.glob("*.json"):
            record = self._read_record(path.stem)
            if record is not None:
                started.append((float(record["started_at"]), path.stem))
        return [name for _, name in sorted(started)]

    def _spawn(self, spec: ServiceSpec) -> Launch:
        log_path = self.log_path(spec.name)
        with log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} starting {spec.name}: {shlex.join(spec.argv)}\n".encode())
            log.flush()
            offset = log.tell()
            proc = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[spec.name] = proc
        return Launch(pid=proc.pid, log_path=log_path, log_offset=offset)

    def _await_ready(self, spec: ServiceSpec, launch: Launch) -> None:
        deadline = time.monotonic() + spec.start_timeout_s
        while True:
            code = self._children[spec.name].poll()
            if code is not None:
                self._fail(spec, launch, f"exited with code {code} before it was ready")
            try:
                if spec.ready(launch):
                    return
            except Exception as exc:  # probes must not raise: a bug, but clean up all the same
                self._fail(spec, launch, f"readiness check raised {exc!r}")
            if time.monotonic() > deadline:
                self._fail(spec, launch, f"not ready after {spec.start_timeout_s:g} s")
            time.sleep(0.1)

    def _fail(self, spec: ServiceSpec, launch: Launch, why: str) -> None:
        signal_group(launch.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._children[spec.name].wait(timeout=5.0)
        self._forget(spec.name)
        tail = "\n".join(launch.log_since_start().splitlines()[-LOG_TAIL_LINES:])
        raise StartError(
            f"{spec.name} {why}; last lines of {launch.log_path}:\n{tail or '(empty log)'}"
        )

    def _alive(self, name: str, record: Mapping[str, Any]) -> bool:
        pid = int(record["pid"])
        child = self._children.get(name)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return pid_alive(pid, record.get("start_ticks"))

    def _wait_dead(self, name: str, record: Mapping[str, Any], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(name, record):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _pid(self, name: str) -> int | None:
        record = self._read_record(name)
        return int(record["pid"]) if record else None

    def _record_path(self, name: str) -> Path:
        return self.pids_dir / f"{name}.json"

    def _write_record(self, spec: ServiceSpec, pid: int) -> None:
        record = {
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "address": spec.address,
            "stop_timeout_s": spec.stop_timeout_s,
            "leftovers": [str(path) for path in spec.leftovers],
            "started_at": time.time(),
            "argv": list(spec.argv),
        }
        tmp = self._record_path(spec.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self._record_path(spec.name))

    def _read_record(self, name: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self._record_path(name).read_text())
        except (OSError, ValueError):
            return None
        return record

    def _forget(self, name: str) -> None:
        record = self._read_record(name) or {}
        for leftover in record.get("leftovers", []):
            Path(leftover).unlink(missing_ok=True)
        self._record_path(name).unlink(missing_ok=True)
        self._children.pop(name, None)
