"""What a job costs in Redis, on a private stack: waiting, and finished in its hot window.

Jobs are made the way a user makes them: ``Client.enqueue_many`` (validation, the CREATE
script, dispatch), with varied prompts, labels and, for half of them, an idempotency key. The
waiting ones are queued on a provider with one slot; the finished ones run through the real
pipeline (a worker, the simulator, SeaweedFS). Each job's cost is ``MEMORY USAGE`` of its own
keys plus its share of every index it is in (``tests.support.memory``).

Measured twice on the same server: as started, with the settings vidqueue ships
(``devstack.redis_server``: ``hash-max-listpack-value 2048``, a job's hash stays one
listpack), then with Redis's default (64: a hash holding a value over 64 bytes, a spec with a
real prompt, is a hash table), for comparison. Printed with them: the
Redis memory 1,000,000 jobs a day need with the default hot window (``hot_retention_s``, 24 h),
and the jobs a day a 32 GiB Redis carries. ``python -m tests.bench_memory`` prints the table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from config import providers as provider_config
from config.settings import Settings
from devstack.stack import Stack
from producer.client import Client
from tests.support.benchstack import bench_settings
from tests.support.memory import (
    FINISHED_TARGET,
    WAITING_TARGET,
    Footprint,
    footprint,
    listpack_limit,
)

Row = tuple[str, str, str]
PROVIDERS = """
[providers.memwait]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_MEMWAIT_KEY"]
max_in_flight = 1
requests_per_second = 1000
first_poll_s = 30
timeout_s = 600

[providers.memdone]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["BENCH_MEMDONE_KEY"]
max_in_flight = 100
requests_per_second = 10000
adaptive_polling = false
first_poll_s = 0.2
min_poll_interval_s = 0.2
max_poll_interval_s = 0.2
timeout_s = 600
"""
KEYS = {"BENCH_MEMWAIT_KEY": "bench-memwait", "BENCH_MEMDONE_KEY": "bench-memdone"}
SUBJECTS = ("a paper boat", "a red kite over dunes", "a lighthouse at dusk", "a fox in snow")
STYLES = ("cinematic, 35 mm film look", "watercolour, soft light", "drone shot, golden hour")
JOBS_PER_DAY = 1_000_000
REDIS_BYTES = 32 * 1024**3
REDIS_DEFAULT = 64  # Redis's own hash-max-listpack-value, for comparison
SIMULATOR = ["--gen-time-s", "0.3", "--gen-jitter-s", "0.1", "--video-bytes", "65536"]


def specs(provider: str, count: int, offset: int) -> list[dict[str, Any]]:
    """Specs as producers send them: a prompt of 40-90 characters, a label or two."""
    out = []
    for n in range(offset, offset + count):
        prompt = f"{SUBJECTS[n % 4]} drifting through the frame, {STYLES[n % 3]}, take {n}"
        labels = {"team": ("growth", "ads", "studio")[n % 3]}
        if n % 2:
            labels["campaign"] = f"spring-{n % 17}"
        out.append({"provider": provider, "model": "cogvideox-flash", "prompt": prompt,
                    "labels": labels})  # fmt: skip
    return out


def enqueue(client: Client, provider: str, count: int, offset: int) -> list[str]:
    """Through the real enqueue path, in batches of 100, half of them with a batch key."""
    ids: list[str] = []
    for start in range(0, count, 100):
        batch = specs(provider, min(100, count - start), offset + start)
        key = f"mem-{provider}-{offset + start}" if (start // 100) % 2 else None
        ids += [r.id for r in client.enqueue_many(batch, producer="bench", idempotency_key=key)]
    return ids


def wait_finished(client: Client, ids: list[str], timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} jobs not finished")
        records = client.stored.many(pending)
        pending = [i for i, r in zip(pending, records, strict=True) if r is None or not r.terminal]
        time.sleep(0.5)


def measure(client: Client, db: redis.Redis, count: int, offset: int) -> tuple[Footprint, ...]:
    """Waiting jobs and finished ones, made now (under the server's current settings)."""
    waiting = enqueue(client, "memwait", count, offset)
    done = enqueue(client, "memdone", count, offset + count)
    wait_finished(client, done)
    ok = [
        j
        for j, r in zip(done, client.stored.many(done), strict=True)
        if r and r.state == "succeeded"
    ]
    # The first waiting job holds the one slot: it is not waiting any more.
    return footprint(db, waiting[1:]), footprint(db, ok)


def _kb(n: float) -> str:
    return f"{n:,.0f} B"


def rows_for(label: str, waiting: Footprint, finished: Footprint, hot_s: int) -> list[Row]:
    hot_share = hot_s / 86400
    need = JOBS_PER_DAY * hot_share * finished.total
    carried = REDIS_BYTES / (finished.total * hot_share)
    parts = f"record {_kb(finished.record)}, keys {_kb(finished.keys)}"
    parts += f", indexes {_kb(finished.indexes)}"
    day = f"   Redis for {JOBS_PER_DAY:,} jobs/day, {hot_s / 3600:.0f} h hot"
    return [
        (f"{label}: waiting job", _kb(waiting.total), f"<= {WAITING_TARGET} B"),
        (f"{label}: finished job, hot", _kb(finished.total), f"<= {FINISHED_TARGET} B"),
        ("   finished, by part", parts, ""),
        (day, f"{need / 1024**3:.2f} GiB", ""),
        ("   jobs/day a 32 GiB Redis carries", f"{carried:,.0f}", ""),
    ]


@contextmanager
def memory_stack() -> Iterator[tuple[Client, redis.Redis, Settings]]:
    settings = bench_settings("vidqueue-memory-", lambda sim: PROVIDERS.format(sim=sim))
    with Stack(settings, dict(KEYS), Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(SIMULATOR)
        stack.start_worker("worker1")
        client = Client(settings, provider_config.load(settings.providers_file), producer="bench")
        yield client, redis.Redis.from_url(settings.redis_url), settings


def memory(count: int = 500) -> list[Row]:
    """Both figures as the server starts (as shipped), then with Redis's default setting."""
    rows: list[Row] = []
    with memory_stack() as (client, db, settings):
        hot_s = int(getattr(settings, "hot_retention_s", 86400) or 86400)
        shipped = listpack_limit(db)
        waiting, finished = measure(client, db, count, 0)
        rows += rows_for(f"hash-max-listpack-value {shipped}", waiting, finished, hot_s)
        db.config_set("hash-max-listpack-value", REDIS_DEFAULT)
        waiting, finished = measure(client, db, count, 2 * count)
        rows += rows_for(f"hash-max-listpack-value {REDIS_DEFAULT}", waiting, finished, hot_s)
        server, allocator = db.info("server"), db.info("memory").get("mem_allocator")
        rows.append(("   server", f"{server.get('redis_version')} ({allocator})", ""))
    return rows


def main() -> int:
    rows = memory(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
    width = max(len(r[0]) for r in rows)
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<60} {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
