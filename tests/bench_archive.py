"""How fast finished jobs move from Redis to the S3 archive (``workers.steps.archive``).

Starts its own Redis and SeaweedFS, makes ``JOBS`` finished jobs (records as the pipeline
leaves them: a spec, a result with two files, a timeline of a dozen entries), and archives
them with the sweep's own pass (``run_pass`` at its defaults: batches of 200, 8 S3 writes in
flight, at most 2,000 jobs or 6 s per pass) until none is left; twice, on fresh jobs each time.
Each job is one PUT, one HEAD and the conditional Redis delete.

The goal: keep up with a million jobs a day (11.6 jobs/s sustained) with the sweep every
10 s. ``python -m tests.bench_archive [jobs]``; ``tests/bench.py`` runs it as ``archive``.
Nothing here is a pass/fail test.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import redis

from config.settings import Settings
from devstack.stack import Stack
from producer.batch import new_job_id
from tests.support.benchstack import bench_settings
from workers.domain.jobs import JobSpec, State, now_iso
from workers.io.storage import Storage
from workers.redis import keys
from workers.redis.archive import ArchiveRows
from workers.redis.enqueue import Creator, NewJob
from workers.steps.archive import PASS_JOBS, run_pass

JOBS = 5000
DAY_JOBS = 1_000_000
SWEEP_S = 10.0


def finished_jobs(client: redis.Redis, count: int) -> list[str]:
    """``count`` jobs, created and then ended as the pipeline ends them (written directly:
    the bench measures archiving, not the pipeline)."""
    spec = JobSpec(
        provider="sim",
        model="cogvideox-flash",
        prompt="a paper boat drifting down a rainy street, cinematic, 4k",
        labels={"team": "bench"},
    )
    creator = Creator(client)
    ids: list[str] = []
    for start in range(0, count, 1000):
        batch = [NewJob.of(new_job_id(), spec) for _ in range(min(1000, count - start))]
        creator.create(batch, producer="bench")
        pipe = client.pipeline(transaction=False)
        for job in batch:
            ids.append(job.job_id)
            pipe.hset(keys.job(job.job_id), mapping=_ended(job.job_id))
            pipe.smove(keys.by_state(State.QUEUED), keys.by_state(State.SUCCEEDED), job.job_id)
            for i in range(12):
                entry = {"at": now_iso(), "state": "", "event": f"poll {i}: running"}
                pipe.rpush(keys.events(job.job_id), json.dumps(entry))
        pipe.execute()
    return ids


def _ended(job_id: str) -> dict[str, str]:
    item = {"bucket": "vidqueue", "size": 4_000_000, "sha256": "0" * 64}
    result = {
        "video": {**item, "key": f"videos/{job_id}/video.mp4", "content_type": "video/mp4"},
        "cover": {**item, "key": f"videos/{job_id}/cover.png", "content_type": "image/png"},
    }
    now = now_iso()
    return {
        "state": str(State.SUCCEEDED),
        "provider_task_id": f"task-{job_id[:12]}",
        "submitted_at": now,
        "provider_finished_at": now,
        "completed_at": now,
        "attempts": "1",
        "polls": "6",
        "result": json.dumps(result),
    }


def archive_rounds(jobs: int = JOBS, rounds: int = 2) -> list[tuple[str, str, str]]:
    settings = bench_settings("vidqueue-bench-archive-", lambda _: "", hot_retention_s=0)
    rows: list[tuple[str, str, str]] = []
    with Stack(settings, {}, Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        client = redis.Redis.from_url(settings.redis_url)
        storage = Storage(settings)
        storage.ensure_bucket()
        for n in range(1, rounds + 1):
            rows += _round(n, settings, client, storage, jobs)
    return rows


def _round(
    n: int, settings: Settings, client: redis.Redis, storage: Storage, jobs: int
) -> list[tuple[str, str, str]]:
    finished_jobs(client, jobs)
    time.sleep(0.01)  # every job ended before the edge
    memory_before = int(client.info("memory")["used_memory"])
    archive = ArchiveRows(client)
    started = time.monotonic()
    passes = archived = 0
    slowest = 0.0
    while True:
        outcome = run_pass(settings, archive, lambda: storage)
        if outcome.failed:
            raise RuntimeError(f"archiving failed: {outcome.errors[:3]}")
        if outcome.archived == 0:
            break
        passes += 1
        archived += outcome.archived
        slowest = max(slowest, outcome.seconds)
    elapsed = time.monotonic() - started
    rate = archived / elapsed
    per_sweep = min(PASS_JOBS, rate * 6.0) / SWEEP_S
    freed = (memory_before - int(client.info("memory")["used_memory"])) / max(archived, 1)
    left = client.zcard(keys.all_jobs())
    return [
        (
            f"archive {n}: {jobs:,} finished jobs Redis → S3 (write, verify, delete)",
            f"{rate:,.0f} jobs/s ({archived:,} in {elapsed:.1f}s, {passes} passes, "
            f"slowest {slowest:.1f}s; {left} left)",
            f">= {DAY_JOBS / 86400:.1f} jobs/s",
        ),
        (
            f"   capacity with the sweep every {SWEEP_S:.0f} s; Redis freed per job",
            f"{per_sweep:,.0f} jobs/s ({per_sweep * 86400 / 1e6:.1f} M/day); {freed:,.0f} B",
            ">= 11.6 jobs/s",
        ),
    ]


def main() -> int:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else JOBS
    for name, result, goal in archive_rounds(jobs):
        print(f"{name:<72} {result:<64} {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
