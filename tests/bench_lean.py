"""What vidqueue costs beyond Celery's own messaging, on a private stack with an instant provider.

``commands_per_job``: Redis commands per job (``CONFIG RESETSTAT`` before, ``INFO commandstats``
after, so commands run by Lua scripts count too) against a bare Celery app (one no-op task, the
broker settings of ``config.celery``) running as many tasks as vidqueue sends per job (submit,
polls, mirror: from the job records). ``orchestration_vs_bare_celery``: vidqueue's jobs/s (first
enqueue to last terminal) against bare Celery's tasks/s ÷ tasks per job, twice each, and what
task events cost bare Celery. Same Redis, same concurrency, one worker at a time (an idle one
would add to the other's figures), no beat (the sweep costs per interval, not per job); the
waits' own commands (SCARD, LLEN, HLEN) and INFO/CONFIG are not counted. Both functions return
``(name, measured, goal)`` rows; ``python -m tests.bench_lean`` prints both tables.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from config import providers as provider_config
from config.settings import Settings
from devstack.env import venv_tool
from devstack.probes import log_says
from devstack.processes import ServiceSpec
from devstack.stack import Stack
from producer.client import Client
from tests.support.benchstack import bench_settings
from workers.domain.jobs import TERMINAL, JobRecord, State, parse_iso
from workers.redis import keys

Row = tuple[str, str, str]
PROVIDERS = """
[providers.lean]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_LEAN_KEY"]
max_in_flight = 10000
requests_per_second = 100000
adaptive_polling = false
first_poll_s = 0.05
min_poll_interval_s = 0.05
max_poll_interval_s = 0.05
timeout_s = 60
"""
QUEUE = "bench_lean"
NOOP = "bench_lean.noop"
EVENTS_ENV = "BENCH_LEAN_EVENTS"
# The broker and worker settings a bare app shares with vidqueue's (copied from config.celery).
SHARED = (
    "broker_transport", "broker_transport_options", "broker_connection_retry_on_startup",
    "task_serializer", "accept_content", "result_serializer", "task_ignore_result",
    "task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier",
)  # fmt: skip


def make_bare(redis_url: str, events: bool) -> Celery:
    """A bare Celery app on vidqueue's broker settings with one no-op task."""
    from config.celery import make_app

    shared = make_app(Settings(redis_url=redis_url)).conf
    app = Celery("bench_lean", set_as_current=False)
    app.conf.update({name: shared[name] for name in SHARED}, broker_url=redis_url)
    app.conf.update(task_default_queue=QUEUE, task_send_sent_event=events)
    app.conf.worker_send_task_events = events  # -E

    @app.task(name=NOOP)  # type: ignore[untyped-decorator]
    def noop() -> None:
        """Nothing: the task is the measure."""

    return app


# The bare worker's app: ``celery -A tests.bench_lean:bare worker``.
_url = os.environ.get("VIDQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")
bare = make_bare(_url, os.environ.get(EVENTS_ENV, "1") == "1")


class Lean:
    """A private stack (Redis, S3, simulator) and one worker at a time: vidqueue's or bare."""

    def __init__(self, stack: Stack, settings: Settings) -> None:
        self.stack, self.settings = stack, settings
        self.client = Client(settings, provider_config.load(settings.providers_file))
        self.db = redis.Redis.from_url(settings.redis_url)
        self.probes: Counter[str] = Counter()  # commands the waits themselves sent
        self.running = ""

    def use(self, worker: str) -> None:
        """Run only ``worker``: "vidqueue", "bare" (task events on) or "bare-noevents"."""
        if worker == self.running:
            return
        if self.running:
            self.stack.stop(self.running.split("-")[0])
        if worker == "vidqueue":
            self.stack.start_worker("vidqueue")
        else:
            self.stack.processes.start(self._bare_spec(events=worker == "bare"))
        self.running = worker

    def _bare_spec(self, events: bool) -> ServiceSpec:
        ctx = self.stack.ctx
        argv = (
            *venv_tool("celery"), "-A", "tests.bench_lean:bare", "worker", "-l", "INFO",
            "--concurrency", str(self.settings.worker_concurrency), "-n", "bare@%h",
            "--without-gossip", "--without-mingle", "-Q", QUEUE,
        )  # fmt: skip
        env = {**ctx.env, "PYTHONPATH": str(ctx.cwd), EVENTS_ENV: "1" if events else "0"}
        return ServiceSpec(
            name="bare", argv=argv, ready=log_says("ready.", 1.0), env=env, cwd=ctx.cwd,
            start_timeout_s=60.0, stop_timeout_s=30.0,
        )  # fmt: skip

    def commands(self) -> Counter[str]:
        """Commands since the last ``CONFIG RESETSTAT`` by name, less the waits' own."""
        raw: dict[str, Any] = self.db.info("commandstats")
        calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()})
        calls.subtract({n: calls[n] for n in ("info", "config|resetstat", "config")})
        calls.subtract(self.probes)
        return +calls

    def _start(self) -> float:
        self.db.config_resetstat()
        self.probes.clear()
        return time.time()

    def _finish(self, run: Run) -> Run:
        time.sleep(1.5)  # the workers' last batched figures are written (workers.redis.stats)
        run.commands = self.commands()
        return run

    def run_jobs(self, n: int) -> Run:
        """Enqueue ``n`` jobs and wait until all are terminal (first enqueue to last)."""
        before = self._terminal()
        started = self._start()
        spec = {"provider": "lean", "model": "cogvideox-flash", "prompt": "lean"}
        ids = [self.client.enqueue(spec, producer="lean").id for _ in range(n)]
        enqueued = time.time() - started
        while self._terminal() < before + n:
            time.sleep(0.02)
        seen = time.time()
        run = self._finish(Run(n, seen - started, enqueue_s=enqueued))
        run.records = [r for i in ids if (r := self.client.get(i)) is not None]
        ends = [parse_iso(r.completed_at).timestamp() for r in run.records if r.completed_at]
        if len(ends) == n:
            run.elapsed = max(ends) - started
        return run

    def _terminal(self) -> int:
        pipe = self.db.pipeline(transaction=False)
        for state in TERMINAL:
            pipe.scard(keys.by_state(state))
        self.probes["scard"] += len(TERMINAL)
        return sum(pipe.execute())

    def run_bare(self, n_tasks: int) -> Run:
        """Send ``n_tasks`` no-op tasks and wait until each ran and was acked."""
        app = make_bare(self.settings.redis_url, events=self.running == "bare")
        started = self._start()
        with app.producer_or_acquire() as producer:
            for _ in range(n_tasks):
                app.send_task(NOOP, queue=QUEUE, producer=producer)
        ended, quiet = 0.0, 0
        while quiet < 2:  # two empty looks in a row: a message between BRPOP and HSET is seen
            pipe = self.db.pipeline(transaction=False)
            pipe.llen(QUEUE)
            pipe.hlen("unacked")
            self.probes.update(llen=1, hlen=1)
            empty = sum(pipe.execute()) == 0
            quiet = quiet + 1 if empty else 0
            ended = time.time() if quiet == 1 else ended
            time.sleep(0.02)
        app.close()
        return self._finish(Run(n_tasks, ended - started))


@dataclass
class Run:
    count: int  # jobs or tasks
    elapsed: float
    commands: Counter[str] = field(default_factory=Counter)
    records: list[JobRecord] = field(default_factory=list)
    enqueue_s: float = 0.0  # of which enqueueing took

    def per(self, n: float) -> float:
        return sum(self.commands.values()) / max(1.0, n)

    def rate(self) -> float:
        return self.count / self.elapsed


def tasks_per_job(records: list[JobRecord]) -> float:
    """Celery messages vidqueue sent per job: the submit, one per poll, the mirror."""
    sent = sum(1 + r.polls + (r.state == State.SUCCEEDED) for r in records)
    return sent / max(1, len(records))


@contextlib.contextmanager
def lean_stack(concurrency: int = 4) -> Iterator[Lean]:
    settings = bench_settings(
        "vidqueue-lean-", lambda sim: PROVIDERS.format(sim=sim), worker_concurrency=concurrency
    )
    with Stack(settings, {"BENCH_LEAN_KEY": "bench-lean"}, Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(["--gen-time-s", "0", "--gen-jitter-s", "0", "--video-bytes", "4096"])
        yield Lean(stack, settings)


def _stack(lean: Lean | None) -> contextlib.AbstractContextManager[Lean]:
    return contextlib.nullcontext(lean) if lean else lean_stack()


def commands_per_job(n_jobs: int = 300, lean: Lean | None = None) -> list[Row]:
    """Redis commands per job: vidqueue's total, bare Celery's for as many tasks, the rest."""
    with _stack(lean) as lv:
        lv.use("vidqueue")
        jobs = lv.run_jobs(n_jobs)
        per_job = tasks_per_job(jobs.records)
        lv.use("bare")
        celery = lv.run_bare(round(per_job * n_jobs))
    ok = sum(r.state == State.SUCCEEDED for r in jobs.records)
    total, messaging, per_task = jobs.per(n_jobs), celery.per(n_jobs), celery.per(celery.count)
    rows: list[Row] = [
        ("a. vidqueue: Redis commands per job", f"{total:.1f} ({ok}/{n_jobs} ok)", ""),
        (f"   bare Celery: per task, x {per_job:.2f}", f"{per_task:.2f}, {messaging:.1f}", ""),
        ("   vidqueue's own per job (total - Celery)", f"{total - messaging:.1f}", "<= 50"),
    ]
    for name, calls in jobs.commands.most_common(15):
        mine, theirs = calls / n_jobs, celery.commands[name] / n_jobs
        split = f"{mine:.2f} (Celery {theirs:.2f}, own {mine - theirs:+.2f})"
        rows.append((f"     {name}", split, ""))
    return rows


def orchestration_vs_bare_celery(n_jobs: int = 400, lean: Lean | None = None) -> list[Row]:
    """vidqueue's jobs/s against bare Celery's tasks/s ÷ tasks per job (twice each), and what
    task events cost bare Celery."""
    rows: list[Row] = []
    on: list[Run] = []
    with _stack(lean) as lv:
        for round_ in (1, 2):
            lv.use("vidqueue")
            jobs = lv.run_jobs(n_jobs)
            per_job = tasks_per_job(jobs.records)
            lv.use("bare")
            on.append(lv.run_bare(round(per_job * n_jobs)))
            vq, celery = jobs.rate(), on[-1].rate() / per_job
            name = f"b. run {round_}: vidqueue jobs/s / (Celery tasks/s / {per_job:.2f})"
            done = f"{vq / celery:.2f}x ({vq:.0f} vs {celery:.0f}; enqueue {jobs.enqueue_s:.1f}s)"
            rows.append((name, done, ">= 0.6x"))
        lv.use("bare-noevents")
        off = [lv.run_bare(on[-1].count) for _ in (1, 2)]
    for name, runs in (("on", on), ("off", off)):
        rate = ", ".join(f"{r.rate():.0f}" for r in runs)
        cost = ", ".join(f"{r.per(r.count):.2f}" for r in runs)
        rows.append((f"   bare Celery, events {name}: tasks/s; cmds/task", f"{rate}; {cost}", ""))
    return rows


def _print(rows: list[Row]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<44} goal")
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<44} {goal}")


def main() -> None:
    with lean_stack() as lv:
        _print(commands_per_job(lean=lv))
        _print(orchestration_vs_bare_celery(lean=lv))


if __name__ == "__main__":
    main()
