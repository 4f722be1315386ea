"""Whole job records as a producer sees them: found (scoped to one producer), read many at
once, listed a page at a time, and purged once finished.

This is the producer side's only door to the job records: ``producer/`` never names a Redis
key, so the key layout (``workers.redis.keys``) can change here without touching it. Writes
of a job's state stay with ``workers.redis.store`` (compare-and-set scripts); the only write
here is the purge of a finished, settled job, which no worker touches any more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import redis

from workers.domain.errors import CancelRefused, JobNotFound
from workers.domain.jobs import TERMINAL, JobRecord
from workers.domain.lean import full_result
from workers.redis import keys, listing
from workers.redis.store import record_from

# How long a finished job's record is kept (the OpenAI facade's ``expires_at``).
RETENTION_S: Final = keys.RECORD_TTL_S
# No job id is longer: a longer one is unknown without asking Redis.
MAX_ID_LENGTH: Final = 128
# What the job store raises when Redis is unreachable (the API answers it with a 503).
StoreUnavailable: TypeAlias = redis.RedisError


@dataclass(frozen=True)
class Finished:
    """A finished job cleared for purging, with what goes with it: its mirrored ``files``
    (``{bucket, key, ...}``, deleted by the caller first; none when they are not its own to
    delete: a reused result's, or its own that other jobs reused) and its index entries."""

    job_id: str
    state: str
    producer: str
    idempotency_key: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


class JobRecords:
    """Reads (and the purge) of job records, on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        self.redis.ping()

    def find(self, job_id: str, producer: str | None = None) -> JobRecord | None:
        """The job's record; None when unknown (or, with ``producer``, not that producer's)."""
        row = self._row(job_id, producer)
        return record_from(row) if row else None

    def check(self, job_id: str, producer: str | None = None) -> None:
        """Raise ``JobNotFound`` unless the job exists (and, with ``producer``, is its)."""
        if self._row(job_id, producer) is None:
            raise JobNotFound(job_id)

    def many(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """Each job's record (None where it is gone), read in one round trip."""
        return [record_from(row) if row else None for row in listing.rows(self.redis, job_ids)]

    def existing(self, ids: Mapping[int, str]) -> dict[int, JobRecord]:
        """The records of ``ids`` (index → job id: the jobs an idempotency key already made),
        read in one round trip; ``JobNotFound`` for one that is gone since."""
        found = self.many(ids.values()) if ids else []
        out: dict[int, JobRecord] = {}
        for (index, job_id), record in zip(ids.items(), found, strict=True):
            if record is None:
                raise JobNotFound(job_id)
            out[index] = record
        return out

    def page(
        self,
        producer: str | None,
        *,
        limit: int,
        after: listing.Position | str | None = None,
        ascending: bool = False,
        filters: listing.Filters | None = None,
    ) -> listing.Scan:
        """A page of ``producer``'s jobs (None: every producer's); see ``listing.scan``."""
        return listing.scan(
            self.redis, producer, limit=limit, after=after, ascending=ascending, filters=filters
        )

    def finished(self, job_id: str, producer: str | None = None) -> Finished:
        """The job, cleared for purging. ``JobNotFound`` when unknown (or another producer's);
        ``CancelRefused`` while it is unfinished or still settling: the provider may still
        work on it, or its webhook is still to be sent."""
        row = self._row(job_id, producer)
        if row is None:
            raise JobNotFound(job_id)
        state = row["state"]
        if state not in TERMINAL or row.get("at_provider") == "1" or row.get("notify") == "pending":
            raise CancelRefused(f"job {job_id} is {state}: not finished yet")
        key = json.loads(row["spec"]).get("idempotency_key") or None
        # Only its own files (a reusing job's are the original's), and none that other
        # records share: an original whose result was reused keeps them for the reusers.
        result = row.get("result")
        shared = int(row.get("reused") or 0) > 0
        files = [] if shared or not result else list(full_result(result, job_id).values())
        return Finished(job_id, state, row.get("producer", ""), key, files)

    def purge(self, job: Finished) -> None:
        """Delete the record (its timeline is in it; an earlier version's separate timeline
        list too), its index entries and its idempotency key, in one transaction: no reader
        sees half a job."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.job(job.job_id), keys.events(job.job_id))
        pipe.zrem(keys.all_jobs(), job.job_id)
        pipe.zrem(keys.by_producer(job.producer), job.job_id)
        pipe.zrem(keys.due(), job.job_id)
        pipe.srem(keys.by_state(job.state), job.job_id)
        if job.idempotency_key:
            pipe.delete(keys.idempotency(job.idempotency_key, producer=job.producer))
        pipe.execute()

    def _row(self, job_id: str, producer: str | None) -> dict[str, str] | None:
        if len(job_id) > MAX_ID_LENGTH:
            return None
        [row] = listing.rows(self.redis, [job_id])
        if row is None or (producer is not None and row.get("producer") != producer):
            return None
        return row
