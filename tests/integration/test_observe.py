"""What operators watch: `GET /metrics` and `vidqueue top`, on the live stack after real jobs;
and how the figures behind them reach Redis (``workers.redis.stats``: buffered, batched,
fork-safe)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

from tests.support.live import LiveStack
from workers.redis import keys
from workers.redis.stats import BUCKETS, Stats, minute

# prometheus_client writes labels in name order
SUBMITS = 'vidqueue_requests_per_minute{key="SIM_ZHIPU_KEY",kind="submit",provider="zhipu"}'


def _run_jobs(live: LiveStack, n: int) -> None:
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}
    live.wait_all([live.client.enqueue(spec).id for _ in range(n)])


def _figure(text: str, prefix: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[-1])


def _metrics_once_flushed(live: LiveStack, n: int) -> str:
    """/metrics once the workers' last figures are written (they flush about every second)."""
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{live.api_url}/metrics", timeout=10).text
        counts = [_figure(text, f"vidqueue_{m}_seconds_count") for m in ("generation", "mirror")]
        if min(counts) >= n or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_metrics_expose_jobs_slots_rates_and_histograms(idle_stack: LiveStack) -> None:
    live = idle_stack
    _run_jobs(live, 3)
    text = _metrics_once_flushed(live, 3)
    assert 'vidqueue_jobs{state="succeeded"}' in text
    assert 'vidqueue_waiting{provider="zhipu"} 0' in text
    assert 'vidqueue_key_cap{key="SIM_ZHIPU_KEY",provider="zhipu"} 3.0' in text
    assert 'vidqueue_key_in_flight{key="SIM_ZHIPU_KEY",provider="zhipu"}' in text
    assert _figure(text, SUBMITS) >= 3
    for metric in ("time_to_submit", "generation", "mirror"):
        count = _figure(text, f"vidqueue_{metric}_seconds_count")
        assert count >= 3
        assert _figure(text, f'vidqueue_{metric}_seconds_bucket{{le="+Inf"}}') == count
        buckets = [_figure(text, f'vidqueue_{metric}_seconds_bucket{{le="{b}"}}') for b in BUCKETS]
        assert buckets == sorted(buckets)  # cumulative
        assert buckets[-1] <= count
    assert "sim-key-zhipu-test" not in text


def test_top_prints_each_provider_and_key(live: LiveStack) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vidqueue"), "top", "--once"],
        env=dict(live.stack.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for name in ("zhipu", "SIM_ZHIPU_KEY", "kling", "in flight", "submits/m"):
        assert name in done.stdout


def _commands(db: redis.Redis) -> int:
    return sum(int(v["calls"]) for name, v in db.info("commandstats").items() if "hincr" in name)


def test_figures_are_batched_into_one_write(redis_db: redis.Redis) -> None:
    stats = Stats(redis_db, flush_interval_s=60)
    redis_db.config_resetstat()
    for i in range(1000):
        stats.observe("generation", i / 10)
        stats.count("sim", "k1", "poll")
    assert _commands(redis_db) == 0  # nothing written yet
    assert stats.flush() <= len(BUCKETS) + 2 + 2  # buckets touched, sum, count; poll, EXPIRE
    hist = stats.histogram("generation")
    assert hist["count"] == 1000
    assert abs(hist["sum"] - sum(i / 10 for i in range(1000))) < 1e-6
    assert hist["le:0.05"] == 1  # 0.0
    assert hist["le:10"] == 101  # 0.0 .. 10.0
    assert hist["le:60"] == 601
    assert hist["le:3600"] == 1000
    assert stats.per_minute("sim", "k1")["poll"] >= 1000 * (1 - (time.time() % 60) / 60)
    name = keys.stats("sim", "k1", minute())
    assert 0 < redis_db.ttl(name) <= keys.STATS_TTL_S


def test_old_cumulative_fields_still_count(redis_db: redis.Redis) -> None:
    redis_db.hset(keys.histogram("mirror"), mapping={"le:5": 2, "le:10": 2, "sum": 6, "count": 2})
    for bound in BUCKETS[BUCKETS.index(30) :]:
        redis_db.hset(keys.histogram("mirror"), f"le:{bound}", 2)
    stats = Stats(redis_db, flush_interval_s=60)
    stats.observe("mirror", 7)
    hist = stats.histogram("mirror")
    assert (hist["le:5"], hist["le:10"], hist["le:3600"]) == (2, 3, 3)
    assert (hist["sum"], hist["count"]) == (13, 3)


def test_figures_reach_redis_within_the_interval(redis_db: redis.Redis) -> None:
    stats = Stats(redis_db, flush_interval_s=0.2)
    stats.count("sim", "k1", "submit", 3)
    deadline = time.monotonic() + 5
    while not redis_db.exists(keys.stats("sim", "k1", minute())):
        assert time.monotonic() < deadline, "never flushed"
        time.sleep(0.05)
    assert int(redis_db.hget(keys.stats("sim", "k1", minute()), "submit") or 0) == 3


def test_threads_lose_no_figure(redis_db: redis.Redis) -> None:
    stats = Stats(redis_db, flush_interval_s=0.01)

    def work() -> None:
        for _ in range(2000):
            stats.observe("mirror", 0.3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist = stats.histogram("mirror")
    assert (hist["count"], hist["le:0.25"], hist["le:0.5"]) == (8000, 0, 8000)


def test_a_forked_child_does_not_write_its_parents_figures(redis_db: redis.Redis) -> None:
    stats = Stats(redis_db, flush_interval_s=60)
    stats.observe("generation", 1)
    pid = os.fork()
    if pid == 0:  # the child: one figure of its own, written at once
        code = 0
        try:
            stats.observe("generation", 2)
            stats.flush()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert stats.histogram("generation")["count"] == 2  # the parent's 1 and the child's 1
    assert stats.histogram("generation")["sum"] == 3
