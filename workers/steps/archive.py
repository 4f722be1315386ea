"""The archiver: finished jobs leave Redis for S3 after the hot window (run by the sweep).

Redis holds the hot state; history lives in S3, where it is cheap. A job that ended more than
``hot_retention_s`` ago (succeeded, failed or cancelled, with no provider still working on it
and no webhook still to send) is, in batches:

1. read from Redis with a digest of its hash and timeline (``workers.redis.archive``);
2. written to S3 as one gzipped JSON document under a key its id alone locates, and verified
   (``workers.io.archive``);
3. removed from Redis (hash, timeline, every index entry, its idempotency key) only if it is
   still finished and unchanged since step 1.

A pass killed anywhere loses nothing and duplicates nothing: before step 3 the job is still in
Redis and the next pass writes the same bytes to the same key again; after it, the archive
holds the job. While S3 is down, step 2 fails, the pass stops, jobs wait in Redis (which grows
by the jobs that keep finishing) and their TTL is taken off so none expires unarchived.
One pass at a time (a Redis lock); each is bounded in jobs and time so the sweep goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from config.settings import Settings
from workers.deps import Deps
from workers.domain.errors import VidqueueError
from workers.io import archive as s3_archive
from workers.io.storage import Storage, s3_client
from workers.redis.archive import ArchiveRows, Snapshot
from workers.redis.store import record_from

log = logging.getLogger("vidqueue.archive")

# Jobs read, written and removed together (one Redis round trip per phase).
BATCH: Final = 200
# S3 writes in flight at once (each is a PUT and a HEAD of a few kB).
CONCURRENCY: Final = 8
# A pass stops after this many jobs or seconds, whichever comes first: the sweep that runs it
# also renews leases and dispatches, every ``sweep_interval_s``. At the defaults (10 s) that
# is up to 200 jobs/s of capacity, against 12 jobs/s for a million jobs a day.
PASS_JOBS: Final = 2000
PASS_S: Final = 6.0
# Index entries created before the hot window's edge looked at per batch to find due jobs
# (old jobs not due yet, e.g. submit_unknown, are skipped each time).
SCAN_BUDGET: Final = 20_000
# Finished records whose TTL is taken off per pass (``ArchiveRows.protect``).
PROTECT_PER_PASS: Final = 20_000
LOCK_S: Final = 60.0
_NOT_TRIED: Final = "not tried: an earlier write of the batch failed"


@dataclass
class Outcome:
    """What one pass did: jobs archived (removed from Redis), left because they changed
    meanwhile, and whether S3 failed (the pass then stopped)."""

    archived: int = 0
    changed: int = 0
    failed: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@lru_cache(maxsize=4)
def archive_storage(settings: Settings) -> Storage:
    """The bucket through a client of short timeouts and no retry: a stalled S3 stops the pass
    within seconds instead of holding the sweep (the mirror's client waits a minute); a write
    that failed is simply made again by the next pass."""
    client = s3_client(settings.s3_endpoint_url, connect_s=2, read_s=5, retries=0)
    return Storage(settings, client)


def archive(d: Deps) -> Outcome:
    """One archiving pass (the sweep's last call). Does nothing with the archive off. Never
    raises: the sweep's leases and dispatch matter more, and the next pass tries again."""
    if not d.settings.archive_enabled:
        return Outcome()
    try:
        return _locked_pass(d)
    except Exception:
        log.exception("archive: the pass failed; jobs stay in Redis")
        return Outcome(failed=True)


def _locked_pass(d: Deps) -> Outcome:
    rows = ArchiveRows(d.redis)
    token = rows.lock(LOCK_S)
    if token is None:
        return Outcome()
    try:
        return run_pass(d.settings, rows, lambda: archive_storage(d.settings))
    finally:
        rows.unlock(token)


def run_pass(
    settings: Settings,
    rows: ArchiveRows,
    storage: Callable[[], Storage],
    *,
    now_s: float | None = None,
    max_jobs: int = PASS_JOBS,
    max_s: float = PASS_S,
) -> Outcome:
    """Archive due jobs in batches until none is left, or ``max_jobs`` / ``max_s`` is spent,
    or S3 fails. ``storage`` is called (once) only when a job is due: a sweep with nothing to
    archive builds no S3 client."""
    started = time.monotonic()
    edge_ms = int(((now_s if now_s is not None else time.time()) - settings.hot_retention_s) * 1000)
    rows.protect(edge_ms, limit=PROTECT_PER_PASS)
    outcome = Outcome()
    done = rank = 0
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="archive") as pool:
        while done < max_jobs and time.monotonic() - started < max_s:
            limit = min(BATCH, max_jobs - done)
            due, reached = rows.due(edge_ms, limit=limit, budget=SCAN_BUDGET, start=rank)
            if not due:
                break
            snapshots = rows.snapshots(due)
            timelines = rows.timelines([snap.job_id for snap in snapshots])
            write = _Writer(storage())
            written = list(pool.map(write, snapshots, timelines))
            verified = [snap for snap, error in zip(snapshots, written, strict=True) if not error]
            outcome.errors += [e for e in written if e and not e.startswith(_NOT_TRIED)]
            removed = rows.delete(verified) if verified else []
            outcome.archived += sum(1 for n in removed if n == 1)
            outcome.changed += sum(1 for n in removed if n == 0)
            # What the walk passed and did not remove stays ahead of the next batch: skip it.
            rank = max(0, reached - sum(1 for n in removed if n != 0))
            done += len(due)
            if write.failed.is_set():
                outcome.failed = True
                log.warning(
                    "archive: writing to S3 failed (%s); %d jobs stay in Redis until S3 answers",
                    outcome.errors[0] if outcome.errors else "?",
                    len(snapshots) - len(verified),
                )
                break
            if not verified:
                break  # only jobs that cannot be written are due (logged): the next pass
    if outcome.failed:
        rows.protect(edge_ms, limit=PROTECT_PER_PASS, rescan=True)
    outcome.seconds = time.monotonic() - started
    if outcome.archived:
        log.info("archive: %d jobs moved to S3 in %.2fs", outcome.archived, outcome.seconds)
    return outcome


class _Writer:
    """Writes a batch's jobs to the archive, each verified. After the first failure the rest
    of the batch is not tried: on a stalled S3 a batch then costs one timeout, not one per
    job, and the sweep that runs it goes on."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.failed = threading.Event()

    def __call__(self, snap: Snapshot, timeline: list[dict[str, Any]]) -> str:
        """'' when the job is in the archive, verified; else why not."""
        if self.failed.is_set():
            return _NOT_TRIED
        key = s3_archive.key_of(self.storage.prefix, snap.job_id)
        if key is None:
            return f"job {snap.job_id}: not a UUIDv7 id"
        try:
            body = s3_archive.encode(record_from(snap.fields), snap.producer, timeline)
        except ValueError as exc:  # a record that does not validate: it stays in Redis
            log.error("archive: job %s cannot be archived: %s", snap.job_id, exc)
            return f"job {snap.job_id}: {exc}"
        try:
            s3_archive.put_verified(self.storage, key, body)
        except VidqueueError as exc:
            self.failed.set()
            return str(exc)
        return ""
