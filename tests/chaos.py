"""``make chaos``: vidqueue's promises, checked on a real stack while everything goes wrong.

    python -m tests.chaos --jobs 500 --workers 3 --seed 7
    python -m tests.chaos --jobs 500 --load     # the same on a loaded machine

Its own stack on free ports (Redis with AOF, SeaweedFS behind the S3 fault proxy, the simulator,
2-3 workers, beat). While jobs are enqueued: a random worker is SIGKILLed about every 10 s and
replaced; one at a time, Redis is restarted (gracefully: AOF on, appendfsync everysec), runs out
of memory for a few seconds (a memory spike: every write refused with OOM), and S3 stalls for a
few seconds (SeaweedFS SIGSTOPped); and the simulator (5xx, 429 + Retry-After, answers lost
after an accepted submit, malformed JSON, unknown statuses, slow, truncated and failing
downloads) and the proxy (resets, 500s, stalls) inject faults all along. Then the faults stop
and the run waits for the drain. Only retryable faults are injected, so every job must succeed,
except submits whose outcome could not be known: those park as ``submit_unknown`` (counted and
reported, never re-sent: Zhipu refuses a repeated request id).

``--load`` runs the fault phase on a loaded machine: one CPU hog per core (``--load-hogs``),
each busy ``--load-on-s`` then idle ``--load-off-s``, over and over (``tests.chaos_load``).
``make chaos`` runs both modes, one after the other.

The checks (``tests.chaos_checks``) print jobs, kills, restarts, faults by kind, lost jobs,
duplicate submissions, cap violations, sha mismatches, unknown-outcome submits, each timed
fault's time to recover (``tests.chaos_faults`` defines it: from the fault's lift to the next
job succeeding), the load average over the fault phase and the drain time. The exit status is
0 only when nothing was lost, paid twice, over the cap or corrupted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import kombu.exceptions
import redis

from config import providers as provider_config
from config.settings import Settings
from devstack.env import LOCAL_DEFAULTS
from devstack.ports import free_ports
from devstack.processes import StartError
from devstack.stack import Stack
from producer.client import Client
from tests.chaos_checks import SETTLED, Report, check
from tests.chaos_faults import (
    MemorySpike,
    Outage,
    Outages,
    RecoveryWatch,
    RedisRestart,
    S3Stall,
    Timed,
)
from tests.chaos_load import CpuLoad, LoadSummary
from workers.redis import keys
from workers.redis.store import Store

PROVIDERS = """
[providers.chaos]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["CHAOS_KEY_A", "CHAOS_KEY_B"]
max_in_flight = {cap}
requests_per_second = 100
first_poll_s = 1.0
min_poll_interval_s = 0.3
max_poll_interval_s = 1.0
timeout_s = {timeout}
request_timeout_s = 2
result_url_ttl_s = 3600
"""
KEYS = {"CHAOS_KEY_A": "chaos-secret-key-a-7f3e", "CHAOS_KEY_B": "chaos-secret-key-b-91c2"}
# Retryable faults only. A stalled answer waits longer than the provider's request timeout (2 s).
SIM_FAULTS: dict[str, float] = {
    "submit_error_rate": 0.04,
    "submit_429_rate": 0.04,
    "submit_stall_rate": 0.01,
    "submit_drop_rate": 0.01,
    "stall_s": 4.0,
    "poll_error_rate": 0.04,
    "poll_429_rate": 0.04,
    "poll_malformed_rate": 0.03,
    "poll_unknown_status_rate": 0.03,
    "retry_after_s": 1.0,
    "download_error_rate": 0.03,
    "download_truncate_rate": 0.03,
    "slow_download_rate": 0.05,
    "slow_download_bytes_per_s": 256 * 1024,
}
PROXY_FAULTS: dict[str, float] = {
    "reset_rate": 0.03,
    "error_rate": 0.03,
    "stall_rate": 0.03,
    "stall_s": 1.0,
}
LARGE_VIDEO_BYTES = 9 * 1024 * 1024  # two parts: a multipart upload through the proxy


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 500
    # As docker-compose.yml runs them: workers on every queue (or on ``queues``), and workers
    # on the mirror queue only. SIGKILLs pick among both, or among the first kind only when
    # ``kill_mirror_workers`` is False (a mirror killed mid-copy is re-sent only when its claim
    # lease, MIRROR_LEASE_S = 30 s, and the grace run out: too slow for the quick test).
    workers: int = 2
    mirror_workers: int = 1
    queues: tuple[str, ...] = ()
    kill_mirror_workers: bool = True
    concurrency: int = 3
    cap: int = 8  # per key; two keys
    kill_every_s: float = 10.0
    min_kills: int = 12
    enqueue_s: float = 120.0  # the jobs are enqueued evenly over this long
    # Kills and faults go on until at most this share of the jobs is unsettled (or for at most
    # ``chaos_after_s`` past the enqueueing); then the faults stop and the drain is timed.
    backlog_share: float = 0.05
    chaos_after_s: float = 180.0
    # The timed faults (tests.chaos_faults), one at a time; a negative time leaves one out.
    redis_restart_at_s: float = 45.0
    memory_spike_at_s: float = 70.0
    memory_spike_s: float = 5.0
    s3_stall_at_s: float = 95.0
    s3_stall_s: float = 5.0
    # A loaded machine over the fault phase (tests.chaos_load): ``load_hogs`` CPU hogs (0: one
    # per core), each busy ``load_on_s`` then idle ``load_off_s``.
    load: bool = False
    load_hogs: int = 0
    load_on_s: float = 4.0
    load_off_s: float = 2.0
    gen_time_s: float = 2.0
    video_bytes: int = 256 * 1024
    timeout_s: float = 60.0
    drain_timeout_s: float = 600.0
    seed: int = 7
    log: Callable[[str], None] = field(
        default=lambda line: print(line, file=sys.stderr, flush=True)
    )


class Chaos:
    """One run: enqueue on a thread; kill, restart and switch faults on the main thread."""

    def __init__(self, stack: Stack, settings: Settings, config: ChaosConfig) -> None:
        self.stack, self.settings, self.config = stack, settings, config
        self.catalogue = provider_config.load(settings.providers_file)
        self.rng = random.Random(config.seed)
        self.ids: list[str] = []
        self.workers: dict[str, str] = {}  # running worker → "worker" or "mirror"
        self.started_workers = 0
        self.kills = 0
        self.sim = f"http://127.0.0.1:{settings.sim_port}"
        self.proxy = stack.env["VIDQUEUE_S3_ENDPOINT_URL"]
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.started = time.monotonic()
        self.watch = RecoveryWatch(self.redis, self.started)
        self.outages = Outages(self._schedule(), self.watch, self.say)
        self.load = LoadSummary()

    @property
    def restarts(self) -> int:
        return self.outages.count(RedisRestart.kind)

    def _schedule(self) -> list[Timed]:
        """The timed faults the config asks for, in the order they are due."""
        c = self.config
        wanted: list[tuple[Outage, float, float]] = [
            (RedisRestart(self.stack), c.redis_restart_at_s, 0.0),
            (MemorySpike(redis.Redis.from_url(self.settings.redis_url)), c.memory_spike_at_s,
             c.memory_spike_s),
            (S3Stall(self.stack), c.s3_stall_at_s, c.s3_stall_s),
        ]  # fmt: skip
        timed = [Timed(outage, at, hold) for outage, at, hold in wanted if at >= 0]
        return sorted(timed, key=lambda t: t.at_s)

    def say(self, line: str) -> None:
        self.config.log(f"[chaos {time.monotonic() - self.started:6.1f}s] {line}")

    def faults(self, on: bool) -> None:
        if on:
            _post(f"{self.sim}/_sim/options", SIM_FAULTS)
            _post(f"{self.proxy}/_proxy/options", PROXY_FAULTS)
        else:
            _post(f"{self.sim}/_sim/faults/off", {})
            _post(f"{self.proxy}/_proxy/options", dict.fromkeys(PROXY_FAULTS, 0.0))
        self.say(f"faults {'on' if on else 'off'}")

    def run(self) -> Report:
        self.started = self.watch.started = time.monotonic()
        self.watch.start()
        try:
            self.loaded_fault_phase()
            self.video_bytes(self.config.video_bytes)
            self.faults(on=False)
            faults_off = time.monotonic()
            unsettled = self.drain(faults_off + self.config.drain_timeout_s)
        finally:
            self.watch.stop()  # recoveries not seen by the end of the drain stay None
        drained_s = time.monotonic() - faults_off
        self.say(f"drained in {drained_s:.1f}s ({len(unsettled)} unsettled); checking")
        report = check(self, drained_s)
        report.recoveries = list(self.watch.recoveries)
        report.load = self.load
        report.total_s = time.monotonic() - self.started
        return report

    def loaded_fault_phase(self) -> None:
        """The fault phase, with the CPU hogs of ``--load`` (if asked) and the load average
        sampled; whatever ends it, the hogs are killed and a fault still on is lifted."""
        c = self.config
        try:
            with CpuLoad(self._hogs(), c.load_on_s, c.load_off_s, self._phase_bound_s()) as load:
                self.load = load.summary
                self.say(f"fault phase: {len(load.pids())} CPU hogs")
                self.fault_phase()
        finally:
            self.outages.lift_all()

    def fault_phase(self) -> None:
        """Enqueue on a thread; kill workers and run the timed faults until ``chaos_done``.
        A kill due while a timed fault is on or recovering waits (tests.chaos_faults)."""
        self.faults(on=True)
        enqueuer = threading.Thread(target=self.enqueue_all, daemon=True)
        enqueuer.start()
        next_kill = self.started + self.config.kill_every_s * self.rng.uniform(0.7, 1.3)
        large_until = 0.0
        while not self.chaos_done(enqueuer):
            self.outages.tick(time.monotonic() - self.started)
            if time.monotonic() >= next_kill and self.outages.quiet():
                if self.rng.random() < 0.3:  # a short window of large (multipart) videos
                    self.video_bytes(LARGE_VIDEO_BYTES)
                    large_until = time.monotonic() + 1.0
                self.kill_one()
                next_kill = time.monotonic() + self.config.kill_every_s * self.rng.uniform(0.7, 1.3)
            if large_until and time.monotonic() >= large_until:
                self.video_bytes(self.config.video_bytes)
                large_until = 0.0
            time.sleep(0.2)

    def _hogs(self) -> int:
        """CPU hogs for this run: none unless ``load``; then ``load_hogs``, or one per core."""
        if not self.config.load:
            return 0
        return self.config.load_hogs or os.cpu_count() or 1

    def _phase_bound_s(self) -> float:
        """The longest the fault phase can last (``chaos_done``), plus a margin: a hog exits
        by itself after this long, even if nothing stops it."""
        return self.config.enqueue_s + self.config.chaos_after_s + 120.0

    def chaos_done(self, enqueuer: threading.Thread) -> bool:
        """Every job enqueued, enough kills, every timed fault over, and the backlog nearly
        gone."""
        if enqueuer.is_alive() or self.kills < self.config.min_kills or not self.outages.done():
            return False
        late = time.monotonic() - self.started > self.config.enqueue_s + self.config.chaos_after_s
        return late or len(self.unsettled()) <= self.config.backlog_share * self.config.jobs

    def unsettled(self) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in self.ids:
            pipe.hget(keys.job(job_id), "state")
        states = [s.decode() if s else "" for s in pipe.execute()]
        return [i for i, s in zip(self.ids, states, strict=True) if s not in SETTLED]

    def enqueue_all(self) -> None:
        client = Client(self.settings, self.catalogue, producer="chaos")
        step = self.config.enqueue_s / max(1, self.config.jobs)
        for i in range(self.config.jobs):
            time.sleep(max(0.0, self.started + i * step - time.monotonic()))
            self.ids.append(self.enqueue(client, i))
        self.say(f"all {self.config.jobs} jobs enqueued")

    def enqueue(self, client: Client, i: int) -> str:
        """Enqueue job ``i``; through a Redis restart the idempotency key makes retries safe."""
        spec: dict[str, Any] = {
            "provider": "chaos",
            "model": "cogvideox-flash",
            "prompt": f"chaos job {i}",
            "idempotency_key": f"chaos-{self.config.seed}-{i}",
        }
        for _ in range(120):
            try:
                return client.enqueue(spec).id
            except (redis.RedisError, kombu.exceptions.OperationalError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"could not enqueue job {i} for a minute")

    def start_worker(self, role: str) -> None:
        """Start a worker of ``role`` ("worker": every queue or ``queues``; "mirror")."""
        self.started_workers += 1
        name = f"{role}{self.started_workers}"
        queues = ["mirror"] if role == "mirror" else list(self.config.queues) or None
        for attempt in range(3):
            try:
                self.stack.start_worker(name, queues, self.config.concurrency)
                break
            except StartError as exc:
                if attempt == 2:
                    raise
                self.say(f"{name} did not start, again: {str(exc).splitlines()[0]}")
        self.workers[name] = role

    def kill_one(self) -> None:
        mirrors = self.config.kill_mirror_workers
        victims = sorted(n for n, role in self.workers.items() if mirrors or role != "mirror")
        victim = self.rng.choice(victims)
        self.stack.kill(victim)
        self.kills += 1
        role = self.workers.pop(victim)
        self.say(f"kill {self.kills}: SIGKILLed {victim}; starting a new {role}")
        self.start_worker(role)

    def story(self, job_id: str) -> str:
        """The job's state and its last few events, for a job that is slow to settle."""
        store = Store(self.redis)
        events = store.events(job_id)[-4:]
        when = [f"{e['at'][11:23]} {e['state'] or ''} {e['event']}".strip() for e in events]
        return f"{store.fields(job_id).get('state')}; " + " | ".join(when)

    def video_bytes(self, size: int) -> None:
        _post(f"{self.sim}/_sim/options", {"video_bytes": size})

    def drain(self, deadline: float) -> list[str]:
        """Wait until every job is settled (terminal or submit_unknown); the rest at the end."""
        last_said = 0.0
        while True:
            unsettled = self.unsettled()
            if not unsettled or time.monotonic() > deadline:
                return unsettled
            if time.monotonic() - last_said > 10:
                self.say(f"draining: {len(unsettled)} jobs not settled yet")
                for job_id in unsettled[:3]:
                    self.say(f"  {job_id}: {self.story(job_id)}")
                last_said = time.monotonic()
            time.sleep(0.5)


def _post(url: str, body: dict[str, Any]) -> None:
    httpx.post(url, json=body, timeout=10).raise_for_status()


def _settings(tmp: Path, config: ChaosConfig) -> tuple[Settings, int]:
    redis_port, s3_port, sim_port, api_port, flower_port, proxy_port = free_ports(6)
    sim = f"http://127.0.0.1:{sim_port}"
    providers = PROVIDERS.format(sim=sim, cap=config.cap, timeout=config.timeout_s)
    (tmp / "providers.toml").write_text(providers)
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(tmp / "providers.toml"),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="vidqueue-chaos",
        run_dir=str(tmp / "run"),
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        sweep_interval_s=1.0,
        sweep_grace_s=3.0,
        worker_concurrency=config.concurrency,
    )
    return settings, proxy_port


def run(config: ChaosConfig, *, keep: bool = False) -> Report:
    """Start a stack, run the chaos, check, stop the stack. The run directory (logs) is
    deleted unless ``keep`` or the run failed."""
    tmp = Path(tempfile.mkdtemp(prefix="vidqueue-chaos-"))
    settings, proxy_port = _settings(tmp, config)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[name] = LOCAL_DEFAULTS[name]
    sim_args = ["--seed", str(config.seed), "--gen-time-s", str(config.gen_time_s)]
    sim_args += ["--gen-jitter-s", str(config.gen_time_s / 2)]
    sim_args += ["--video-bytes", str(config.video_bytes)]
    with Stack(settings, dict(KEYS), tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(sim_args)
        stack.start_s3_proxy(proxy_port, {"seed": config.seed})
        chaos = Chaos(stack, settings, config)
        for role in ["worker"] * config.workers + ["mirror"] * config.mirror_workers:
            chaos.start_worker(role)
        stack.start_beat()
        try:
            report = chaos.run()
        finally:
            for name in chaos.workers:  # a crash is all a test worker needs to end
                if stack.is_running(name):
                    stack.kill(name)
    report.run_dir = str(tmp)
    if report.ok and not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _interrupt_on_sigterm() -> None:
    """A SIGTERM (``kill``, a CI timeout) ends the run as Ctrl-C does: through every
    ``finally``, so the CPU hogs are killed, Redis and S3 are given back and the stack stops."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    _interrupt_on_sigterm()
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    ints = ("jobs", "workers", "mirror_workers", "concurrency", "cap", "min_kills", "seed")
    for name in (*ints, "load_hogs"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    floats = ("kill_every_s", "enqueue_s", "drain_timeout_s", "redis_restart_at_s")
    faults = ("memory_spike_at_s", "memory_spike_s", "s3_stall_at_s", "s3_stall_s")
    for name in (*floats, *faults, "load_on_s", "load_off_s"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name)
        )
    parser.add_argument(
        "--load", action="store_true", help="CPU hogs on every core over the fault phase"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = vars(parser.parse_args(argv))
    keep = args.pop("keep")
    report = run(ChaosConfig(**args), keep=keep)
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
