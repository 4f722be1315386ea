"""The chaos run's timed faults, one at a time, and each one's time to recover.

The faults (each at its time in the run, the first three once each by default):

- ``redis restart``: Redis stopped gracefully and started again (AOF on, appendfsync
  everysec); it is lifted when the restarted Redis answers.
- ``memory spike``: Redis out of memory. Its ``maxmemory`` is set just above what it uses and
  a ballast (``chaos:ballast:*``, outside vidqueue's ``vq:`` keys) is written until Redis
  refuses with OOM; the limit then drops 1 MiB below the use, so that the memory an ack or an
  expiry frees does not end the outage early (the technique of
  tests/integration/test_redis_faults.py). Every write is refused (``noeviction``) for
  ``hold_s``; it is lifted by restoring the old limit, then the ballast is deleted.
- ``s3 stall``: SeaweedFS SIGSTOPped (its sockets accept, nothing answers: the fault proxy's
  upstream calls and the mirrors' uploads hang) for ``hold_s``, then SIGCONT, the technique of
  tests/integration/test_s3_stall.py.

Time to recover: from the moment a fault is lifted (the restarted Redis answers; the old
``maxmemory`` is restored; SIGCONT is sent) until the next job succeeds, that is until the
number of succeeded jobs (``SCARD vq:state:succeeded``) first exceeds what it was when the
fault was lifted, sampled every 50 ms. A success needs every part of the pipeline at once
(Redis taking writes, a worker, the provider, S3), so it is the first proof that the whole
system makes progress again. The count is read just before the lift (after it, for the
restart: Redis is down before). ``None`` when no job succeeded within ``GIVE_UP_S`` of the
lift.

Each fault also reports how many jobs succeeded while it was on (from when it was fully on,
Redis refusing or S3 stopped, to its lift; for the restart, across it): about 0 shows that the
fault did stop progress, so the recovery time measures a real restart of it. A memory spike may
let one or two through: Redis (7.0) refuses a script's write for OOM only while that script has
written nothing yet, so a script whose first write frees memory (a ``ZREM``) runs its later
writes too.

Faults never overlap, nor overlap a recovery: a fault (and a worker SIGKILL) due while another
is on, or while the last one's recovery has not been seen yet (for up to ``QUIET_AFTER_S``),
waits, so each recovery time is that fault's alone (the provider's and the proxy's
per-request faults go on all along).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import redis

from devstack.stack import Stack
from workers.domain.jobs import State
from workers.redis import keys

WATCH_EVERY_S: Final = 0.05
GIVE_UP_S: Final = 120.0
QUIET_AFTER_S: Final = 30.0
BALLAST: Final = "chaos:ballast:"
BALLAST_BLOB: Final = b"x" * 16384


class Outage(Protocol):
    """A fault that starts with ``begin`` and ends with ``lift``; ``lift`` is safe to call
    after a ``begin`` that failed halfway."""

    kind: str

    def begin(self) -> None: ...

    def lift(self) -> None: ...


@dataclass
class RedisRestart:
    """Redis restarted gracefully; over when ``begin`` returns (Redis answers again)."""

    stack: Stack
    kind: str = "redis restart"

    def begin(self) -> None:
        self.stack.restart("redis")

    def lift(self) -> None:
        """Nothing: the restart is over once Redis answers."""


@dataclass
class MemorySpike:
    """Redis out of memory until ``lift`` (see the module docstring)."""

    client: redis.Redis
    kind: str = "memory spike"
    ballast: int = 0
    _limit: int | None = None  # the maxmemory to restore; None: not changed yet

    def begin(self) -> None:
        self._limit = int(self.client.config_get("maxmemory").get("maxmemory") or 0)
        used = self._used()
        self.client.config_set("maxmemory", used + 512 * 1024)
        for n in range(10_000):
            try:
                self.client.set(f"{BALLAST}{n}", BALLAST_BLOB)
            except redis.exceptions.OutOfMemoryError:
                self.ballast = n
                used = self._used()
                # Never 0, which would mean no limit at all.
                self.client.config_set("maxmemory", max(used - 1024 * 1024, used // 2, 1))
                return
        self.ballast = 10_000
        raise RuntimeError("Redis never ran out of memory")

    def lift(self) -> None:
        if self._limit is None:
            return
        self.client.config_set("maxmemory", self._limit)
        self._limit = None
        names = [f"{BALLAST}{n}" for n in range(self.ballast + 1)]
        for first in range(0, len(names), 500):
            self.client.delete(*names[first : first + 500])

    def _used(self) -> int:
        return int(self.client.info("memory")["used_memory"])


@dataclass
class S3Stall:
    """SeaweedFS (its whole process group) stopped until ``lift``."""

    stack: Stack
    kind: str = "s3 stall"
    _stopped: bool = False

    def begin(self) -> None:
        self._stopped = True  # first: a SIGSTOP that reached part of the group is lifted too
        self.stack.kill("s3", signal.SIGSTOP)

    def lift(self) -> None:
        if self._stopped:
            self.stack.kill("s3", signal.SIGCONT)
            self._stopped = False


@dataclass
class Recovery:
    """One fault: when it was lifted (s into the run), how long it was held, and how long the
    system then took to make progress (None: not seen)."""

    kind: str
    lifted_at_s: float
    held_s: float
    seconds: float | None = None
    baseline: int = 0  # succeeded jobs when it was lifted
    lifted_mono: float = 0.0
    # Jobs that succeeded while it was on: 0 shows the fault stopped progress (it bit).
    succeeded_meanwhile: int = 0


class RecoveryWatch:
    """A thread that watches the succeeded count after each lifted fault (module docstring)."""

    def __init__(self, client: redis.Redis, started: float) -> None:
        self.client, self.started = client, started
        self.recoveries: list[Recovery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="recovery-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def succeeded(self) -> int:
        """The succeeded count; retried while Redis does not answer (a restart's tail)."""
        for _ in range(100):
            try:
                return int(self.client.scard(keys.by_state(State.SUCCEEDED)))
            except redis.ConnectionError:
                time.sleep(0.1)
        return int(self.client.scard(keys.by_state(State.SUCCEEDED)))

    def lifted(self, kind: str, held_s: float, baseline: int, before: int) -> None:
        """Start timing ``kind``'s recovery from now, from ``baseline`` succeeded jobs
        (``before``: as many when it began)."""
        now = time.monotonic()
        recovery = Recovery(
            kind, now - self.started, held_s, None, baseline, now, baseline - before
        )
        with self._lock:
            self.recoveries.append(recovery)

    def pending(self) -> bool:
        """Whether a recovery is still awaited (for at most ``QUIET_AFTER_S`` after its lift)."""
        now = time.monotonic()
        with self._lock:
            return any(
                r.seconds is None and now - r.lifted_mono < QUIET_AFTER_S for r in self.recoveries
            )

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            with self._lock:
                now = time.monotonic()
                waiting = [
                    r
                    for r in self.recoveries
                    if r.seconds is None and now - r.lifted_mono < GIVE_UP_S
                ]
            if not waiting:
                continue
            try:
                count = int(self.client.scard(keys.by_state(State.SUCCEEDED)))
            except redis.RedisError:
                continue
            seen = time.monotonic()
            with self._lock:
                for r in waiting:
                    if count > r.baseline:
                        r.seconds = seen - r.lifted_mono


@dataclass
class Timed:
    """An outage scheduled ``at_s`` into the run, held ``hold_s``."""

    outage: Outage
    at_s: float
    hold_s: float
    began: float | None = None  # monotonic
    lifted: bool = False
    before: int = 0  # succeeded jobs when it was fully on (a restart: when it began)


@dataclass
class Outages:
    """The run's timed faults, one at a time; ``tick`` from the chaos loop starts and lifts
    them; ``lift_all`` (in a ``finally``) ends whatever is on."""

    schedule: list[Timed]
    watch: RecoveryWatch
    say: Callable[[str], None]
    begun: list[str] = field(default_factory=list)  # kinds, in order

    def tick(self, elapsed_s: float) -> None:
        """Lift the fault that is on once its hold is over; else start the next one due, if
        the system is quiet."""
        on = self.on()
        if on is not None:
            assert on.began is not None
            if time.monotonic() - on.began >= on.hold_s:
                self._lift(on)
            return
        due = [t for t in self.schedule if t.began is None and t.at_s <= elapsed_s]
        if due and self.quiet():
            self._begin(min(due, key=lambda t: t.at_s))

    def on(self) -> Timed | None:
        return next((t for t in self.schedule if t.began is not None and not t.lifted), None)

    def quiet(self) -> bool:
        """No fault on, and the last one's recovery seen (or given up on)."""
        return self.on() is None and not self.watch.pending()

    def done(self) -> bool:
        return all(t.lifted for t in self.schedule)

    def count(self, kind: str) -> int:
        return self.begun.count(kind)

    def lift_all(self) -> None:
        """End any fault still on (an error or KeyboardInterrupt in the middle of one)."""
        for timed in self.schedule:
            if timed.began is not None and not timed.lifted:
                timed.lifted = True
                timed.outage.lift()

    def _begin(self, timed: Timed) -> None:
        kind = timed.outage.kind
        restart = isinstance(timed.outage, RedisRestart)
        timed.before = self.watch.succeeded() if restart else 0
        timed.began = time.monotonic()
        self.begun.append(kind)
        self.say(f"{kind}: on" + (f" for {timed.hold_s:g} s" if timed.hold_s > 0 else ""))
        try:
            timed.outage.begin()
        except BaseException:
            self.lift_all()
            raise
        if not restart:  # counted once the fault is fully on (Redis refusing, S3 stopped)
            timed.before = self.watch.succeeded()
        if timed.hold_s <= 0:
            self._lift(timed)

    def _lift(self, timed: Timed) -> None:
        assert timed.began is not None
        restart = isinstance(timed.outage, RedisRestart)
        baseline = 0 if restart else self.watch.succeeded()
        timed.lifted = True
        timed.outage.lift()
        if restart:
            baseline = self.watch.succeeded()
        held = time.monotonic() - timed.began
        self.watch.lifted(timed.outage.kind, held, baseline, timed.before)
        self.say(f"{timed.outage.kind}: lifted after {held:.1f} s")
