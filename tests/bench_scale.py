"""``make bench`` scale scenario: detection lag and submit delay at 10, 1,000 and 5,000 jobs in
flight, on generations of 120-180 s with a lag target of 30 s, through the HTTP API.

Jobs arrive at the rate that holds N in flight (N / 150 per second, open loop, in batches of
``POST /v1/jobs/batch`` every half second). After a ramp of one mean generation, the jobs
created during the measurement window are followed to the end. For each level it reports:

- detection lag p50/p95: when vidqueue saw the provider finish minus when the simulator says
  the generation finished;
- submit delay p95: submitted_at − created_at (slots are free: the cap is above N);
- polls per job, duplicate step messages (steps re-sent: lost or re-delivered copies, from
  the jobs' timelines, against all steps sent), duplicate paid submissions (the simulator's
  count of repeated request ids);
- peak worker RSS (all worker processes) and Redis memory;
- CPU seconds per job and per poll, in the workers and in Redis, over the window, and from
  them a capacity estimate: jobs per day for one worker core and for one Redis core.

Run alone: ``python -m tests.bench_scale [10 1000 5000]``.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from config.settings import Settings
from devstack.stack import Stack
from tests.support.benchstack import bench_settings, sim_url
from workers.redis import keys

Row = tuple[str, str, str]
MEAN_S, JITTER_S = 150.0, 30.0  # generations of 120-180 s
LAG_TARGET_S = 30.0
MODEL = "cogvideox-flash"
PROVIDERS = """
[providers.scale]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_SCALE_KEY"]
max_in_flight = 20000
requests_per_second = 5000
first_poll_s = {first}
min_poll_interval_s = {lag}
max_poll_interval_s = {lag}
timeout_s = 1800
"""
WORKERS = 2  # two worker "containers"
# The steps wait on HTTP and Redis: a threads pool runs them with less CPU and memory than
# prefork (README: Scaling). BENCH_SCALE_POOL_ARGS="" measures prefork instead.
CONCURRENCY = int(os.environ.get("BENCH_SCALE_CONCURRENCY", "16"))
POOL: tuple[str, ...] = tuple(os.environ.get("BENCH_SCALE_POOL_ARGS", "--pool threads").split())


@dataclass
class Scale:
    stack: Stack
    settings: Settings
    sim: str
    api: str
    redis: redis.Redis
    pids: dict[str, list[int]] = field(default_factory=dict)


@contextmanager
def scale_stack() -> Iterator[Scale]:
    settings = bench_settings(
        "vidqueue-bench-scale-",
        lambda sim: PROVIDERS.format(sim=sim, first=MEAN_S - JITTER_S, lag=LAG_TARGET_S),
        worker_concurrency=CONCURRENCY,
    )
    sim = sim_url(settings)
    with Stack(settings, {"BENCH_SCALE_KEY": "bench-scale"}, Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator()
        for n in range(WORKERS):
            stack.start_worker(f"worker{n + 1}", extra_args=POOL)
        stack.start_beat()
        stack.start_api()
        yield Scale(
            stack,
            settings,
            sim,
            f"http://127.0.0.1:{settings.api_port}",
            redis.Redis.from_url(settings.redis_url),
        )


# -- process accounting --------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (a prefork worker's children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _pid(s: Scale, name: str) -> int:
    return int(s.stack.processes.status(name).pid or 0)


def _cpu_s(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _worker_pids(s: Scale) -> list[int]:
    return [p for n in range(WORKERS) for p in _tree(_pid(s, f"worker{n + 1}"))]


# -- one level -----------------------------------------------------------------------------


@dataclass
class Level:
    in_flight: int
    created: list[tuple[float, str]] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    peak_redis_mib: float = 0.0
    peak_in_flight: int = 0


def _enqueue(s: Scale, level: Level, until: float, rate: float, stop: threading.Event) -> None:
    spec = {"provider": "scale", "model": MODEL, "prompt": "a lighthouse at dusk"}
    owed, started = 0.0, time.monotonic()
    with httpx.Client(base_url=s.api, timeout=60) as http:
        while time.monotonic() < until and not stop.is_set():
            owed = rate * (time.monotonic() - started) - len(level.created)
            count = min(1000, int(owed))
            if count > 0:
                answer = http.post("/v1/jobs/batch", json={"jobs": [spec] * count})
                answer.raise_for_status()
                now = time.monotonic()
                level.created += [(now, job["id"]) for job in answer.json()["jobs"]]
            time.sleep(0.5)


def _sample(s: Scale, level: Level, stop: threading.Event) -> None:
    while not stop.wait(5.0):
        level.peak_rss_mib = max(level.peak_rss_mib, _rss_mib(_worker_pids(s)))
        memory = int(s.redis.info("memory")["used_memory"]) / 2**20
        level.peak_redis_mib = max(level.peak_redis_mib, memory)
        running = s.redis.scard(keys.by_state("running"))
        level.peak_in_flight = max(level.peak_in_flight, int(running))


def _seed_durations(s: Scale) -> None:
    """A warm system: the model's recent generation times are known (the first poll lands at
    their 5th percentile, then one poll per lag target)."""
    rng = random.Random(7)
    name = keys.durations("scale", MODEL)
    s.redis.delete(name)
    durations = [int(rng.uniform(MEAN_S - JITTER_S, MEAN_S + JITTER_S) * 1000) for _ in range(200)]
    s.redis.lpush(name, *durations)


def run_level(s: Scale, n: int, *, ramp_s: float, window_s: float) -> list[Row]:
    httpx.post(
        f"{s.sim}/_sim/options",
        json={"gen_time_s": MEAN_S, "gen_jitter_s": JITTER_S, "video_bytes": 4096},
    ).raise_for_status()
    _seed_durations(s)
    level, stop = Level(n), threading.Event()
    rate = n / MEAN_S
    t0 = time.monotonic()
    sampler = threading.Thread(target=_sample, args=(s, level, stop), daemon=True)
    sampler.start()
    enqueuer = threading.Thread(
        target=_enqueue, args=(s, level, t0 + ramp_s + window_s, rate, stop), daemon=True
    )
    enqueuer.start()
    time.sleep(ramp_s)
    cpu_before = (_cpu_s(_worker_pids(s)), _cpu_s([_pid(s, "redis")]), time.monotonic())
    done_before = _terminal_count(s)
    polls_before = _sim_polls(s)
    enqueuer.join()
    cpu_after = (_cpu_s(_worker_pids(s)), _cpu_s([_pid(s, "redis")]), time.monotonic())
    done_in_window = _terminal_count(s) - done_before
    polls_in_window = _sim_polls(s) - polls_before
    measured = [job for at, job in level.created if at >= t0 + ramp_s]
    records = _wait_terminal(s, measured, timeout_s=MEAN_S + JITTER_S + 240)
    stop.set()
    return _rows(s, level, records, cpu_before, cpu_after, done_in_window, polls_in_window)


def _terminal_count(s: Scale) -> int:
    return sum(int(s.redis.scard(keys.by_state(x))) for x in ("succeeded", "failed", "cancelled"))


def _sim_polls(s: Scale) -> int:
    return int(httpx.get(f"{s.sim}/_sim/stats").json().get("polls", 0))


def _wait_terminal(s: Scale, ids: list[str], timeout_s: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        pipe = s.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job(job_id))
        records = [{k.decode(): v.decode() for k, v in r.items()} for r in pipe.execute()]
        pending = [r for r in records if r.get("state") not in ("succeeded", "failed")]
        if not pending or time.monotonic() > deadline:
            return records
        time.sleep(2.0)


# -- figures -------------------------------------------------------------------------------


def _pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def _lags(s: Scale, records: list[dict[str, str]]) -> list[float]:
    from workers.domain.jobs import parse_iso

    lags = []
    with httpx.Client(base_url=s.sim, timeout=30) as http:
        for r in records:
            if r.get("state") != "succeeded" or not r.get("provider_task_id"):
                continue
            task = http.get(f"/_sim/tasks/{r['provider_task_id']}").json()
            seen = parse_iso(r["provider_finished_at"]).timestamp()
            lags.append(max(0.0, seen - float(task["finish_at"])))
    return lags


def _resent(s: Scale, records: list[dict[str, str]]) -> int:
    pipe = s.redis.pipeline(transaction=False)
    for r in records:
        pipe.lrange(keys.events(r["id"]), 0, -1)
    return sum(b"re-sent" in entry for events in pipe.execute() for entry in events)


def _rows(
    s: Scale,
    level: Level,
    records: list[dict[str, str]],
    cpu_before: tuple[float, float, float],
    cpu_after: tuple[float, float, float],
    done: int,
    polls: int,
) -> list[Row]:
    from workers.domain.jobs import parse_iso

    n = level.in_flight
    ok = [r for r in records if r.get("state") == "succeeded"]
    lags = _lags(s, records)
    delays = [
        (parse_iso(r["submitted_at"]) - parse_iso(r["created_at"])).total_seconds()
        for r in records
        if r.get("submitted_at")
    ]
    polls_per_job = statistics.mean(int(r.get("polls", "0")) for r in ok) if ok else 0.0
    steps_sent = sum(2 + int(r.get("polls", "0")) for r in records)
    resent = _resent(s, records)
    stats = httpx.get(f"{s.sim}/_sim/stats").json()
    worker_cpu = cpu_after[0] - cpu_before[0]
    redis_cpu = cpu_after[1] - cpu_before[1]
    per_job_w = worker_cpu / done if done else float("nan")
    per_job_r = redis_cpu / done if done else float("nan")
    per_poll_w = worker_cpu / polls if polls else float("nan")
    tag = f"{n:,} in flight"
    return [
        (f"scale {tag}: jobs measured / succeeded", f"{len(records)} / {len(ok)}", "all"),
        ("   peak running", str(level.peak_in_flight), f"~{n:,}"),
        (
            "   detection lag p50 / p95",
            f"{_pct(lags, 0.5):.1f} / {_pct(lags, 0.95):.1f} s",
            "p95 <= 32 s",
        ),
        ("   submit delay p95", f"{_pct(delays, 0.95):.2f} s", "<= 5 s"),
        ("   polls per job", f"{polls_per_job:.2f}", "1+(T-a)/lag ~ 2"),
        (
            "   duplicate step messages",
            f"{resent} of {steps_sent} ({100 * resent / max(1, steps_sent):.2f} %)",
            "< 1 %",
        ),
        ("   duplicate paid submissions", str(stats.get("duplicate_request_ids", 0)), "0"),
        (
            "   peak worker RSS / Redis memory",
            f"{level.peak_rss_mib:.0f} MiB / {level.peak_redis_mib:.0f} MiB",
            "",
        ),
        (
            "   CPU per job: workers / Redis",
            f"{per_job_w * 1000:.1f} ms / {per_job_r * 1000:.1f} ms ({done} jobs ended)",
            "",
        ),
        ("   worker CPU per poll", f"{per_poll_w * 1000:.1f} ms ({polls} polls)", ""),
        (
            "   capacity: jobs/day per worker core / Redis core",
            # Below ~100 jobs the idle cost (pollers, heartbeats) dominates: no estimate.
            f"{86400 / per_job_w:,.0f} / {86400 / per_job_r:,.0f}" if done >= 100 else "n/a",
            "",
        ),
    ]


LEVELS: dict[int, tuple[float, float]] = {
    # in flight: (ramp s, window s)
    10: (0.0, 900.0),  # 60 jobs: a p95 of fewer would be the largest one or two
    1000: (MEAN_S, 120.0),
    5000: (MEAN_S, 120.0),
}


def scale(levels: list[int] | None = None) -> list[Row]:
    rows: list[Row] = []
    with scale_stack() as s:
        for n in levels or list(LEVELS):
            ramp_s, window_s = LEVELS.get(n, (MEAN_S, 120.0))
            print(f"scale: {n} in flight ...", file=sys.stderr, flush=True)
            rows += run_level(s, n, ramp_s=ramp_s, window_s=window_s)
    return rows


def main() -> int:
    rows = scale([int(a) for a in sys.argv[1:]] or None)
    width = max(len(r[0]) for r in rows)
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<40} {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
