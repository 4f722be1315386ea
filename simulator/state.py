"""The provider-neutral task registry: tasks, in-flight accounting and counters.

Wire-format modules (``zhipu`` today; OpenAI, Ark, Kling or a new-api gateway later) translate
their JSON into :meth:`Registry.submit` / :meth:`Registry.get` calls and back, so every provider
shares one clock, one RNG, one set of counters and one media store.

All mutation happens on the event loop (the route handlers are ``async``), so no lock is needed;
the media streams that run in worker threads only read immutable :class:`Task` objects.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from simulator.options import SimOptions


class Clock(Protocol):
    """Where the simulator reads time; tests pass a fake one to skip waiting."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: when tasks finish."""
        ...

    def time(self) -> float:
        """Unix seconds: what URL expiry timestamps are written in."""
        ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class TaskState(StrEnum):
    """Provider-neutral task states; each wire format maps them to its own words."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # only by a wire format with a cancel call (Ark)


@dataclass(frozen=True)
class Task:
    """One accepted generation. Its outcome and size are fixed when it is created."""

    id: str
    provider: str
    key: str
    model: str
    request_id: str
    finish_at: float
    will_fail: bool
    video_bytes: int
    params: Mapping[str, object] = field(default_factory=dict)
    # Monotonic time of acceptance: with ``finish_at`` it gives a wire format's progress.
    started_at: float = 0.0
    cancelled: bool = False


class SubmitRejected(Exception):
    """A submit the registry refused; nothing was created."""


class DuplicateRequestId(SubmitRejected):
    """The client-chosen request id was already accepted once."""


class ConcurrencyExceeded(SubmitRejected):
    """The key already has ``concurrency_limit`` tasks in flight."""


@dataclass
class Counters:
    """What tests assert on. Reset together with the tasks."""

    submissions: int = 0
    submissions_by_key: Counter[str] = field(default_factory=Counter)
    max_in_flight_by_key: dict[str, int] = field(default_factory=dict)
    rate_limited_429: int = 0
    duplicate_request_ids: int = 0
    polls: int = 0
    downloads: int = 0
    cover_downloads: int = 0
    expired_url_403: int = 0
    request_ids: Counter[str] = field(default_factory=Counter)
    # Injected faults by kind (``simulator.faults``).
    faults: Counter[str] = field(default_factory=Counter)


class Registry:
    """Every task the simulator accepted, and the counters about them."""

    def __init__(self, options: SimOptions, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._options = options
        self._rng = random.Random(options.seed)
        self._tasks: dict[str, Task] = {}
        self._finishes_by_key: dict[str, list[float]] = {}
        self._seen_request_ids: set[str] = set()
        self._seq = 0
        self.counters = Counters()

    @property
    def options(self) -> SimOptions:
        return self._options

    def set_options(self, options: SimOptions) -> None:
        """Apply new options to tasks created from now on; a new seed restarts the RNG."""
        if options.seed is not None and options.seed != self._options.seed:
            self._rng = random.Random(options.seed)
        self._options = options

    def reset(self) -> None:
        """Forget every task and counter; keep the options and restart the seeded RNG."""
        self._rng = random.Random(self._options.seed)
        self._tasks.clear()
        self._finishes_by_key.clear()
        self._seen_request_ids.clear()
        self._seq = 0
        self.counters = Counters()

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``; used for injected errors and failures."""
        return rate > 0 and self._rng.random() < rate

    def uniform(self, low: float, high: float) -> float:
        """A number in [low, high] from the seeded RNG (e.g. where to cut a download short)."""
        return self._rng.uniform(low, high)

    def submit(
        self,
        *,
        provider: str,
        key: str,
        model: str,
        request_id: str | None,
        params: Mapping[str, object],
        id_prefix: str = "",
    ) -> Task:
        """Accept a task or raise :class:`SubmitRejected` (counted) without creating anything.

        The duplicate check comes first: a retried submit whose first attempt was accepted must
        be told so even when the key is at its limit. ``id_prefix`` makes ids look like the
        wire format's own (``video_…``, ``task_…``); the prefixed id is the registry's key.
        """
        if request_id is not None and request_id in self._seen_request_ids:
            self.counters.duplicate_request_ids += 1
            raise DuplicateRequestId(request_id)
        limit = self._options.concurrency_limit
        already = self.in_flight(key)
        if limit and already >= limit:
            self.counters.rate_limited_429 += 1
            raise ConcurrencyExceeded(f"{limit} tasks in flight")
        task = self._new_task(provider, key, model, request_id, params, id_prefix)
        self._tasks[task.id] = task
        heapq.heappush(self._finishes_by_key.setdefault(key, []), task.finish_at)
        self._count_accepted(task, client_request_id=request_id, in_flight=already + 1)
        return task

    def get(self, task_id: str, provider: str | None = None) -> Task | None:
        """The task with this id, if it exists (and belongs to ``provider`` when given)."""
        task = self._tasks.get(task_id)
        if task is None or (provider is not None and task.provider != provider):
            return None
        return task

    def state(self, task: Task) -> TaskState:
        if task.cancelled:
            return TaskState.CANCELLED
        if self.clock.monotonic() < task.finish_at:
            return TaskState.RUNNING
        return TaskState.FAILED if task.will_fail else TaskState.SUCCEEDED

    def progress(self, task: Task) -> float:
        """How far the generation has come, from 0.0 (just accepted) to 1.0 (finished)."""
        span = task.finish_at - task.started_at
        if span <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.clock.monotonic() - task.started_at) / span))

    def cancel(self, task: Task) -> bool:
        """Stop a running task, so it no longer counts in flight; False if it already ended."""
        if self.state(task) is not TaskState.RUNNING:
            return False
        self._tasks[task.id] = replace(task, cancelled=True)
        finishes = self._finishes_by_key.get(task.key, [])
        if task.finish_at in finishes:
            finishes.remove(task.finish_at)
            heapq.heapify(finishes)
        return True

    def forget(self, task_id: str) -> None:
        """Delete a task's record, as a provider does when asked to delete a finished task."""
        self._tasks.pop(task_id, None)

    def tasks_of(self, provider: str, key: str) -> list[Task]:
        """The tasks ``key`` created at ``provider``, newest first."""
        mine = [t for t in self._tasks.values() if t.provider == provider and t.key == key]
        return sorted(mine, key=lambda task: task.started_at, reverse=True)

    def in_flight(self, key: str) -> int:
        """Tasks of ``key`` accepted and not yet past their finish time."""
        finishes = self._finishes_by_key.get(key)
        if not finishes:
            return 0
        now = self.clock.monotonic()
        while finishes and finishes[0] <= now:
            heapq.heappop(finishes)
        return len(finishes)

    def stats(self) -> dict[str, object]:
        """The counters as JSON-ready data (the ``GET /_sim/stats`` body)."""
        c = self.counters
        return {
            "submissions": c.submissions,
            "submissions_by_key": dict(c.submissions_by_key),
            "in_flight_by_key": {key: self.in_flight(key) for key in self._finishes_by_key},
            "max_in_flight_by_key": dict(c.max_in_flight_by_key),
            "rate_limited_429": c.rate_limited_429,
            "duplicate_request_ids": c.duplicate_request_ids,
            "polls": c.polls,
            "downloads": c.downloads,
            "cover_downloads": c.cover_downloads,
            "expired_url_403": c.expired_url_403,
            "request_ids": dict(c.request_ids),
            "faults": dict(c.faults),
            "tasks": len(self._tasks),
        }

    def _new_task(
        self,
        provider: str,
        key: str,
        model: str,
        request_id: str | None,
        params: Mapping[str, object],
        id_prefix: str = "",
    ) -> Task:
        opts = self._options
        self._seq += 1
        # Numeric-looking like Zhipu's ids; the sequence number makes it unique.
        task_id = f"{id_prefix}{self._rng.randrange(10**8, 10**9)}{self._seq:010d}"
        jitter = self._rng.uniform(-opts.gen_jitter_s, opts.gen_jitter_s)
        duration = max(0.0, opts.gen_time_s + jitter)
        now = self.clock.monotonic()
        return Task(
            id=task_id,
            provider=provider,
            key=key,
            model=model,
            request_id=request_id if request_id is not None else f"sim-{task_id}",
            finish_at=now + duration,
            will_fail=self.roll(opts.fail_rate),
            video_bytes=opts.video_bytes,
            params=dict(params),
            started_at=now,
        )

    def _count_accepted(self, task: Task, *, client_request_id: str | None, in_flight: int) -> None:
        c = self.counters
        c.submissions += 1
        c.submissions_by_key[task.key] += 1
        self._seen_request_ids.add(task.request_id)
        if client_request_id is not None:
            c.request_ids[client_request_id] += 1
        peak = max(c.max_in_flight_by_key.get(task.key, 0), in_flight)
        c.max_in_flight_by_key[task.key] = peak
