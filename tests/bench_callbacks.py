"""Provider callbacks against adaptive polling alone, side by side in one run.

On a private stack (Redis, S3, the simulator, one worker, beat and the HTTP API, which
receives the callbacks), with generations of 30-120 s (mean 75 s, uniform) scaled down 10x
in time, like ``make bench``'s polling scenario, and Kling's wire format (which calls back):

1. side by side, at the same time: 60 jobs on ``adaptive`` (no callbacks; lag target 10 s,
   first poll learned from 30 warm-up jobs) and 60 jobs on ``callbacks`` (armed; safety poll
   every 120 s);
2. then 60 jobs on ``callbacks`` with 30 % of the simulator's callbacks lost.

Each row: polls per job, and the detection lag (the simulator's finish time to the poll that
saw it) p50 / p95, in real-time seconds (measured × 10). Run alone:
``python -m tests.bench_callbacks``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from config import providers as provider_config
from devstack.stack import Stack
from producer.client import Client
from tests.support.benchstack import bench_settings, sim_url
from workers.deps import DURATIONS_REFRESH_S
from workers.domain.jobs import TERMINAL, JobRecord, parse_iso

Row = tuple[str, str, str]
SCALE, N_JOBS, WARM_UP = 10, 60, 30
MEAN_S, JITTER_S, LAG_TARGET_S, SAFETY_S = 75.0, 45.0, 10.0, 120.0
PROVIDERS = """
[providers.adaptive]
kind = "kling"
base_url = "{sim}/kling"
api_key_env = ["BENCH_ADAPTIVE_KEY"]
max_in_flight = 200
requests_per_second = 1000
first_poll_s = 0.5
min_poll_interval_s = 0.25
max_poll_interval_s = {lag}
timeout_s = 120

[providers.callbacks]
kind = "kling"
base_url = "{sim}/kling"
api_key_env = ["BENCH_CALLBACKS_KEY"]
max_in_flight = 200
requests_per_second = 1000
min_poll_interval_s = 0.25
timeout_s = 120
callback_base_url = "API_BASE"
callback_safety_poll_s = {safety}
"""
# The simulator's two known Kling access/secret pairs (simulator.kling.SECRETS).
KEYS = {
    "BENCH_ADAPTIVE_KEY": "sim-kling-access:sim-kling-secret-test",
    "BENCH_CALLBACKS_KEY": "sim-kling-access-1:sim-kling-secret-1",
}


class Run:
    def __init__(self, client: Client, sim: str) -> None:
        self.client, self.sim = client, sim

    def sim_call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.sim}{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def enqueue(self, provider: str, count: int) -> list[str]:
        spec = {"provider": provider, "model": "kling-v2-6", "prompt": "bench"}
        return [self.client.enqueue(spec).id for _ in range(count)]

    def wait(self, ids: list[str], timeout_s: float = 900) -> list[JobRecord]:
        deadline, pending = time.monotonic() + timeout_s, set(ids)
        while pending and time.monotonic() < deadline:
            pending = {i for i in pending if (r := self.client.get(i)) and r.state not in TERMINAL}
            time.sleep(0.1)
        return [r for i in ids if (r := self.client.get(i)) is not None]

    def lag_s(self, record: JobRecord) -> float:
        """The simulator's finish to the poll that saw it, in real-time seconds."""
        task = self.sim_call("GET", f"/_sim/tasks/{record.provider_task_id}")
        seen = parse_iso(record.provider_finished_at or record.created_at).timestamp()
        return max(0.0, seen - float(task["finish_at"])) * SCALE

    def row(self, name: str, records: list[JobRecord], n: int) -> tuple[Row, float, float]:
        done = [r for r in records if r.state == "succeeded"]
        lags = sorted(self.lag_s(r) for r in done)
        polls = statistics.mean(r.polls for r in done) if done else 0.0
        p50, p95 = _pct(lags, 0.5), _pct(lags, 0.95)
        raw = p95 / SCALE
        result = (
            f"{polls:.2f}, {p50:.2f} / {p95:.2f} (p95 as measured {raw:.3f}); {len(done)}/{n} ok"
        )
        return (f"callbacks: {name}: polls/job, lag p50 / p95 (s)", result, ""), polls, p95


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0


def callbacks_vs_polling() -> list[Row]:
    settings = bench_settings(
        "vidqueue-bench-callbacks-",
        lambda sim: PROVIDERS.format(sim=sim, lag=LAG_TARGET_S / SCALE, safety=SAFETY_S / SCALE),
        callback_secret="bench-callback-secret",
        worker_concurrency=6,
    )
    providers_file = Path(settings.providers_file)
    api = f"http://127.0.0.1:{settings.api_port}"
    providers_file.write_text(providers_file.read_text().replace("API_BASE", api))
    with Stack(settings, dict(KEYS), Path(settings.run_dir)) as stack:
        for start in (stack.start_redis, stack.start_s3, stack.start_simulator, stack.start_api):
            start()
        stack.start_worker("worker1")
        stack.start_beat()
        run = Run(
            Client(settings, provider_config.load(settings.providers_file)), sim_url(settings)
        )
        return _measure(run)


def _measure(run: Run) -> list[Row]:
    gen = {"gen_time_s": MEAN_S / SCALE, "gen_jitter_s": JITTER_S / SCALE}
    run.sim_call("POST", "/_sim/options", json={**gen, "concurrency_limit": 0})
    run.sim_call("POST", "/_sim/reset")
    run.wait(run.enqueue("adaptive", WARM_UP))  # the adaptive side learns its first poll
    time.sleep(DURATIONS_REFRESH_S + 1)  # ...once each worker process re-reads the durations
    adaptive, armed = run.enqueue("adaptive", N_JOBS), run.enqueue("callbacks", N_JOBS)
    row_a, polls_a, _ = run.row("adaptive polling alone", run.wait(adaptive), N_JOBS)
    row_c, polls_c, p95_c = run.row("callbacks", run.wait(armed), N_JOBS)
    run.sim_call("POST", "/_sim/options", json={"callback_loss_rate": 0.3})
    lossy = run.wait(run.enqueue("callbacks", N_JOBS))
    row_l, _, p95_l = run.row("callbacks, 30 % lost", lossy, N_JOBS)
    lost = N_JOBS - sum(r.state == "succeeded" for r in lossy)
    return [
        row_a,
        row_c,
        (
            "   polls/job with callbacks",
            f"{polls_c:.2f} ({polls_a / max(polls_c, 0.01):.1f}x fewer)",
            "<= 1.5",
        ),
        ("   lag p95 with callbacks", f"{p95_c:.2f} s", "<= 1 s"),
        row_l,
        ("   30 % lost: jobs lost, lag p95", f"{lost}, {p95_l:.1f} s", f"0, <= {SAFETY_S:.0f} s"),
    ]


if __name__ == "__main__":
    rows = callbacks_vs_polling()
    width = max(len(r[0]) for r in rows)
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<50} {goal}", file=sys.stdout)
