"""``make bench``: the governor's figures, measured side by side in one run on a real stack.

1. Cap utilisation: 400 jobs, cap 8, generations of 2 s ± 0.5 s.
2. Polls per job and detection lag: adaptive polling against a fixed 10 s interval, on
   generations of 30-120 s, both scaled down 10x in time, running at the same time.
3. Fairness: producer A enqueues 2,000 jobs, then producer B 20; B's time against B alone.
4. What waiting jobs cost: 100,000 queued jobs, Redis memory per job (the store's own enqueue
   rate is printed too; the producer's figure is ``enqueue`` below, through the HTTP API).

Then the side-by-side benches, each on a stack of its own against its baseline in the same run:

- ``enqueue``: ``POST /v1/jobs/batch`` and single POSTs against a minimal FastAPI app
  (``tests/bench_enqueue.py``);
- ``lean``: Redis commands per job, and jobs/s with an instant provider against bare Celery
  no-op tasks on the same Redis; task events on and off (``tests/bench_lean.py``);
- ``mirror``: a 512 MiB copy against boto3 ``upload_fileobj``, and RSS for 1 GiB
  (``tests/bench_mirror.py``);
- ``coldstart``: a fresh worker's first submit, cap utilisation against a thread-per-slot
  poller, dispatch gaps (``tests/bench_coldstart.py``);
- ``callbacks``: provider callbacks against adaptive polling alone on one workload, and with
  30 % of callbacks lost (``tests/bench_callbacks.py``);
- ``scale``: 10, 1,000 and 5,000 jobs in flight on generations of 120-180 s with a 30 s lag
  target: lag, submit delay, polls, duplicates, memory, CPU per job and a capacity estimate
  (``tests/bench_scale.py``);
- ``archive``: finished jobs moved from Redis to the S3 archive, jobs/s, twice
  (``tests/bench_archive.py``);
- ``memory``: Redis bytes per waiting and per finished job against their targets, the memory
  1 M jobs a day need, the jobs a day 32 GiB carry (``tests/bench_memory.py``).

It prints a table of results against their goals. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from config import providers as provider_config
from config.settings import Settings
from devstack.stack import Stack
from producer.client import Client
from tests.support.benchstack import bench_settings, sim_url
from workers.domain.errors import CancelRefused
from workers.domain.jobs import TERMINAL, JobRecord, JobSpec, parse_iso
from workers.redis.store import Store

SCALE = 10  # scenario 2 runs 10x faster than real time
PROVIDERS = """
[providers.util]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_UTIL_KEY"]
max_in_flight = 8
requests_per_second = 1000
first_poll_s = 1.0
min_poll_interval_s = 0.05
max_poll_interval_s = 0.05
timeout_s = 60

[providers.fixed]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_FIXED_KEY"]
max_in_flight = 200
requests_per_second = 1000
adaptive_polling = false
first_poll_s = {fixed}
min_poll_interval_s = {fixed}
max_poll_interval_s = {fixed}
timeout_s = 60

[providers.adaptive]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_ADAPTIVE_KEY"]
max_in_flight = 200
requests_per_second = 1000
first_poll_s = 0.5
min_poll_interval_s = 0.25
max_poll_interval_s = {fixed}
timeout_s = 60

[providers.fair]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_FAIR_KEY"]
max_in_flight = 8
requests_per_second = 1000
first_poll_s = 0.3
min_poll_interval_s = 0.05
max_poll_interval_s = 0.05
timeout_s = 60
"""
KEYS = {
    "BENCH_UTIL_KEY": "bench-util",
    "BENCH_FIXED_KEY": "bench-fixed",
    "BENCH_ADAPTIVE_KEY": "bench-adaptive",
    "BENCH_FAIR_KEY": "bench-fair",
}
Row = tuple[str, str, str, bool | None]


class Bench:
    def __init__(self, stack: Stack, settings: Settings, sim: str) -> None:
        self.stack, self.settings, self.sim = stack, settings, sim
        self.client = Client(settings, provider_config.load(settings.providers_file))

    def sim_call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.sim}{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def enqueue(self, provider: str, count: int, producer: str = "bench") -> list[str]:
        spec = {"provider": provider, "model": "cogvideox-flash", "prompt": "bench"}
        return [self.client.enqueue(spec, producer=producer).id for _ in range(count)]

    def wait(self, ids: list[str], timeout_s: float = 600) -> list[JobRecord]:
        deadline = time.monotonic() + timeout_s
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            pending = {i for i in pending if (r := self.client.get(i)) and r.state not in TERMINAL}
            time.sleep(0.05)
        return [r for i in ids if (r := self.client.get(i)) is not None]


def cap_utilisation(b: Bench) -> list[Row]:
    b.sim_call(
        "POST",
        "/_sim/options",
        json={"gen_time_s": 2.0, "gen_jitter_s": 0.5, "concurrency_limit": 8, "video_bytes": 4096},
    )
    b.sim_call("POST", "/_sim/reset")
    started = time.time()
    records = b.wait(b.enqueue("util", 400))
    elapsed = max(parse_iso(r.completed_at or r.created_at).timestamp() for r in records) - started
    stats = b.sim_call("GET", "/_sim/stats")
    ok = sum(r.state == "succeeded" for r in records)
    ratio = (ok / elapsed) / (8 / 2.0)
    max_seen = stats["max_in_flight_by_key"].get("bench-util", 0)
    return [
        (
            "1. cap utilisation (throughput / (cap / mean))",
            f"{ratio:.3f} ({ok} jobs in {elapsed:.1f}s)",
            ">= 0.95",
            ratio >= 0.95,
        ),
        ("   most in flight at the provider (cap 8)", str(max_seen), "<= 8", max_seen <= 8),
        ("   429 answers", str(stats["rate_limited_429"]), "0", stats["rate_limited_429"] == 0),
    ]


def polling(b: Bench) -> list[Row]:
    b.sim_call(
        "POST",
        "/_sim/options",
        json={"gen_time_s": 75 / SCALE, "gen_jitter_s": 45 / SCALE, "concurrency_limit": 0},
    )
    b.sim_call("POST", "/_sim/reset")
    b.wait(b.enqueue("adaptive", 30))  # warm-up: the adaptive side learns from these
    fixed, adaptive = b.enqueue("fixed", 60), b.enqueue("adaptive", 60)
    rows: list[Row] = []
    measured = {}
    for name, ids in (("fixed 10 s", fixed), ("adaptive", adaptive)):
        records = [r for r in b.wait(ids) if r.state == "succeeded"]
        lags = sorted(_lag(b, r) * SCALE for r in records)
        polls = statistics.mean(r.polls for r in records)
        measured[name] = (polls, _pct(lags, 0.5), _pct(lags, 0.95))
        rows.append(
            (
                f"2. {name}: polls per job, lag p50 / p95 (real-time s)",
                f"{polls:.2f}, {measured[name][1]:.2f} / {measured[name][2]:.2f}",
                "",
                True,
            )
        )
    fewer = measured["fixed 10 s"][0] / measured["adaptive"][0]
    lag_ok = measured["adaptive"][2] <= measured["fixed 10 s"][2] * 1.05
    floor = 1 + (75 - 30) / 10  # fewest polls at this lag (docs/design.md §3): 5.5
    rows += [
        ("   fewer polls (fixed / adaptive)", f"{fewer:.2f}x", ">= 3x", fewer >= 3),
        (
            "   adaptive p95 lag vs fixed p95 lag",
            f"{measured['adaptive'][2]:.2f} vs {measured['fixed 10 s'][2]:.2f}",
            "no worse",
            lag_ok,
        ),
        (
            "   adaptive polls vs the minimum 1+(T-a)/lag",
            f"{measured['adaptive'][0]:.2f} vs {floor:.2f}",
            "within 10%",
            measured["adaptive"][0] <= floor * 1.1,
        ),
    ]
    return rows


def _lag(b: Bench, record: JobRecord) -> float:
    task = b.sim_call("GET", f"/_sim/tasks/{record.provider_task_id}")
    seen = parse_iso(record.provider_finished_at or record.created_at).timestamp()
    return max(0.0, seen - float(task["finish_at"]))


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0


def fairness(b: Bench) -> list[Row]:
    b.sim_call("POST", "/_sim/options", json={"gen_time_s": 0.5, "gen_jitter_s": 0.0})
    alone = _timed(lambda: b.wait(b.enqueue("fair", 20, producer="B")))
    flood = b.enqueue("fair", 2000, producer="A")
    together = _timed(lambda: b.wait(b.enqueue("fair", 20, producer="B")))
    for job_id in flood:  # drain A: cancel what still waits, let the rest finish
        with contextlib.suppress(CancelRefused):
            b.client.cancel(job_id)
    b.wait(flood)
    ratio = together / alone
    return [
        (
            "3. fairness: B's 20 with A's 2,000 queued / B alone",
            f"{ratio:.2f} ({together:.2f}s vs {alone:.2f}s)",
            "<= 2",
            ratio <= 2,
        )
    ]


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def waiting_cost(b: Bench) -> list[Row]:
    url = b.settings.redis_url.rsplit("/", 1)[0] + "/12"
    db = redis.Redis.from_url(url)
    db.flushdb()
    store = Store(db)
    spec = JobSpec(
        provider="fair",
        model="cogvideox-flash",
        prompt="a paper boat in the rain",
        labels={"team": "bench"},
    )
    before = int(db.info("memory")["used_memory"])
    started = time.monotonic()
    for batch in range(100):
        pipe = db.pipeline(transaction=False)
        for i in range(1000):
            store.create(f"w{batch:03}{i:04}", spec, producer="bench", pipe=pipe)
        pipe.execute()
    rate = 100_000 / (time.monotonic() - started)
    per_job = (int(db.info("memory")["used_memory"]) - before) / 100_000
    db.flushdb()
    return [
        ("4. Redis memory per waiting job", f"{per_job:.0f} bytes", "", True),
        ("   enqueue rate (batches of 1,000)", f"{rate:,.0f} jobs/s", "", True),
    ]


SCENARIOS: dict[str, Callable[[Bench], list[Row]]] = {
    "utilisation": cap_utilisation,
    "polling": polling,
    "fairness": fairness,
    "waiting": waiting_cost,
}


def _judged(rows: list[tuple[str, str, str]]) -> list[Row]:
    """Rows of the side-by-side benches (their goals are read by a person, not checked here)."""
    return [(name, result, goal, None) for name, result, goal in rows]


def _enqueue() -> list[Row]:
    from tests.bench_enqueue import enqueue_vs_baseline

    return _judged(enqueue_vs_baseline())


def _lean() -> list[Row]:
    from tests.bench_lean import commands_per_job, lean_stack, orchestration_vs_bare_celery

    with lean_stack() as lean:
        return _judged(commands_per_job(lean=lean) + orchestration_vs_bare_celery(lean=lean))


def _mirror() -> list[Row]:
    from tests.bench_mirror import mirror_vs_boto3

    return _judged(mirror_vs_boto3())


def _coldstart() -> list[Row]:
    from tests.bench_coldstart import coldstart_and_utilisation

    return _judged(coldstart_and_utilisation())


def _callbacks() -> list[Row]:
    from tests.bench_callbacks import callbacks_vs_polling

    return _judged(callbacks_vs_polling())


def _scale() -> list[Row]:
    from tests.bench_scale import scale

    return _judged(scale())


def _archive() -> list[Row]:
    from tests.bench_archive import archive_rounds

    return _judged(archive_rounds())


def _memory() -> list[Row]:
    from tests.bench_memory import memory

    return _judged(memory())


# Each of these starts a stack of its own, measures against its baseline in the same run.
STANDALONE: dict[str, Callable[[], list[Row]]] = {
    "enqueue": _enqueue,
    "lean": _lean,
    "mirror": _mirror,
    "coldstart": _coldstart,
    "callbacks": _callbacks,
    "scale": _scale,
    "memory": _memory,
    "archive": _archive,
}


def main() -> int:
    """``python -m tests.bench [NAME ...]`` (default: all). Names: the governor's scenarios
    (utilisation, polling, fairness, waiting) and the side-by-side ones (enqueue, lean, mirror,
    coldstart, callbacks, scale: 10, 1,000 and 5,000 jobs in flight, about 25 minutes)."""
    chosen = sys.argv[1:] or [*SCENARIOS, *STANDALONE]
    unknown = [name for name in chosen if name not in SCENARIOS and name not in STANDALONE]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    governor = [SCENARIOS[name] for name in chosen if name in SCENARIOS]
    if governor:
        rows += _governor(governor)
    for name in (n for n in chosen if n in STANDALONE):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += STANDALONE[name]()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<44} {'goal':<14} met")
    for name, result, goal, met in rows:
        verdict = "" if met is None or not goal else "yes" if met else "NO"
        print(f"{name:<{width}}  {result:<44} {goal:<14} {verdict}")
    return 0


def _governor(scenarios: list[Callable[[Bench], list[Row]]]) -> list[Row]:
    settings = bench_settings(
        "vidqueue-bench-",
        lambda sim: PROVIDERS.format(sim=sim, fixed=10 / SCALE),
        sweep_interval_s=2.0,
        sweep_grace_s=15.0,
        worker_concurrency=6,
    )
    sim = sim_url(settings)
    rows: list[Row] = []
    with Stack(settings, dict(KEYS), Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator()
        stack.start_worker("worker1")
        stack.start_beat()
        bench = Bench(stack, settings, sim)
        for scenario in scenarios:
            print(f"running {scenario.__name__} ...", file=sys.stderr, flush=True)
            rows += scenario(bench)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
