"""Provider callbacks: a POST to a task's ``callback_url`` on each of its status changes.

A wire-format module calls :meth:`Callbacks.follow` when a submit names a callback URL, giving a
``render`` (the task as that vendor's callback body, with its status word) and the shares of the
generation time at which the vendor's status word changes (e.g. Kling's ``QUEUED_SHARE``). One
asyncio task per followed task wakes at those moments on the registry's clock, renders the task
exactly as a poll would render it at that moment, and emits a callback whenever the status word
differs from the last one. A callback therefore never announces a state before a poll would show
it: delay, retries and reordering only make it later.

A courier per followed task delivers its callbacks in order with an ``httpx.AsyncClient``; a
delivery that fails (connection refused, timeout, non-2xx) is retried ``RETRIES`` times,
``callback_retry_s`` apart, as Ark reportedly does. Options bend the delivery: loss, duplicates,
reversed order, an altered per-job token, extra delay (see :class:`~simulator.options.SimOptions`).
Counters are in ``GET /_sim/stats`` → ``callbacks``; ``POST /_sim/reset`` cancels pending ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from simulator.state import Registry, Task, TaskState

# A callback not acknowledged within this is a failed delivery (Ark's reported 5 s).
ACK_TIMEOUT_S: Final = 5.0
# Re-sends after a failed delivery, each ``callback_retry_s`` after the previous attempt.
RETRIES: Final = 3
# The longest single sleep while waiting for a moment: a fake clock moved by a test is noticed.
MAX_NAP_S: Final = 0.5
# Wake this far past a status boundary, so float rounding cannot still show the old status.
EDGE_S: Final = 1e-6

# The task as the vendor's callback body, with its status word (for spotting changes).
Snapshot = tuple[str, object]
Render = Callable[[Task], Snapshot]


@dataclass
class CallbackCounters:
    """What happened to callbacks since the last reset."""

    sent: int = 0  # deliveries acknowledged with a 2xx
    lost: int = 0  # dropped by callback_loss_rate, never sent
    duplicates: int = 0  # extra copies queued by callback_dup_rate
    failed: int = 0  # delivery attempts refused, timed out or answered non-2xx
    retries: int = 0  # attempts after a failed one
    gave_up: int = 0  # callbacks whose every attempt failed


@dataclass(frozen=True)
class Letter:
    """One callback to deliver: where, what, and not before ``due`` (event-loop time)."""

    url: str
    body: object
    due: float


@dataclass
class Watch:
    """A followed task: how to render it, when its status may change, what awaits delivery."""

    task_id: str
    url: str
    render: Render
    shares: tuple[float, ...]
    outbox: asyncio.Queue[Letter | None] = field(default_factory=asyncio.Queue)
    held: list[Letter] = field(default_factory=list)  # callback_reorder: kept until the last


def spoil_token(url: str) -> str:
    """``url`` with its last path segment (a per-job token) altered in its last character."""
    parts = urlsplit(url)
    head, _, token = parts.path.rpartition("/")
    spoiled = token[:-1] + ("x" if token[-1:] != "x" else "y")
    return urlunsplit(parts._replace(path=f"{head}/{spoiled}"))


class Callbacks:
    """Every followed task of one simulator, its HTTP client and its counters."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.counters = CallbackCounters()
        self._running: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def follow(self, task: Task, url: str, render: Render, shares: Sequence[float] = ()) -> None:
        """Call ``url`` back on each status change of ``task``; must run on the event loop.

        ``shares`` are the fractions of the generation time where the vendor's status word
        changes while the task runs; the end of the generation is always one.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            return  # nothing a vendor could POST to
        watch = Watch(task.id, url, render, tuple(shares))
        job = asyncio.get_running_loop().create_task(self._follow(watch))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def stats(self) -> dict[str, int]:
        """The counters, plus ``pending``: tasks still followed or with callbacks undelivered."""
        return {**asdict(self.counters), "pending": len(self._running)}

    def reset(self) -> None:
        """Cancel every pending callback and zero the counters."""
        for job in self._running:
            job.cancel()
        self._running.clear()
        self.counters = CallbackCounters()

    async def close(self) -> None:
        """Stop everything and close the HTTP client (the app's shutdown)."""
        loop = asyncio.get_running_loop()
        jobs = [job for job in self._running if job.get_loop() is loop]
        self.reset()
        await asyncio.gather(*jobs, return_exceptions=True)
        if self._client is not None and self._loop is loop:
            await self._client.aclose()
        self._client = self._loop = None

    async def _follow(self, watch: Watch) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._courier(watch))
            await self._watch(watch)

    async def _watch(self, watch: Watch) -> None:
        """Render the task at each moment its status may change; emit on every change."""
        last: str | None = None
        for moment in self._moments(watch):
            await self._until(moment)
            task = self.registry.get(watch.task_id)
            if task is None:
                break  # deleted: nothing more to say about it
            status, body = watch.render(task)
            final = self.registry.state(task) is not TaskState.RUNNING
            if status != last:
                last = status
                self._emit(watch, body, final=final)
            if final:
                break
        await watch.outbox.put(None)

    def _moments(self, watch: Watch) -> Iterator[float]:
        """Acceptance, each share's boundary, then the finish: monotonic moments, in order."""
        task = self.registry.get(watch.task_id)
        if task is None:
            return
        span = task.finish_at - task.started_at
        yield task.started_at
        for share in sorted(watch.shares):
            yield task.started_at + share * span + EDGE_S
        yield task.finish_at + EDGE_S

    async def _until(self, moment: float) -> None:
        clock = self.registry.clock
        while (left := moment - clock.monotonic()) > 0:
            await asyncio.sleep(min(left, MAX_NAP_S))

    def _emit(self, watch: Watch, body: object, *, final: bool) -> None:
        """Queue one status change's callback, as the options bend it."""
        registry, opts = self.registry, self.registry.options
        letters: list[Letter] = []
        if registry.roll(opts.callback_loss_rate):
            self.counters.lost += 1
        else:
            url = spoil_token(watch.url) if opts.callback_bad_token else watch.url
            due = asyncio.get_running_loop().time() + opts.callback_delay_s
            letters.append(Letter(url, body, due))
            if registry.roll(opts.callback_dup_rate):
                self.counters.duplicates += 1
                letters.append(letters[0])
        if opts.callback_reorder and not final:
            watch.held.extend(letters)
            return
        for letter in [*letters, *reversed(watch.held)]:
            watch.outbox.put_nowait(letter)
        watch.held.clear()

    async def _courier(self, watch: Watch) -> None:
        loop = asyncio.get_running_loop()
        while (letter := await watch.outbox.get()) is not None:
            await asyncio.sleep(max(0.0, letter.due - loop.time()))
            await self._deliver(letter)

    async def _deliver(self, letter: Letter) -> None:
        for attempt in range(1 + RETRIES):
            if attempt:
                self.counters.retries += 1
                await asyncio.sleep(self.registry.options.callback_retry_s)
            if await self._post(letter):
                self.counters.sent += 1
                return
            self.counters.failed += 1
        self.counters.gave_up += 1

    async def _post(self, letter: Letter) -> bool:
        try:
            response = await self._http().post(letter.url, json=letter.body)
        except (httpx.HTTPError, httpx.InvalidURL):
            return False
        return response.is_success

    def _http(self) -> httpx.AsyncClient:
        """One client per event loop; no proxy from the environment (a vendor calls directly)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=ACK_TIMEOUT_S, trust_env=False)
            self._loop = loop
        return self._client
