"""Jobs that left Redis, as producers read them: from the S3 archive (``workers.io.archive``).

Why here and not in ``workers.redis.records``: the archive is S3, and every S3 call a request
makes goes through ``producer.files.RequestS3`` (its own threads, short timeouts, a 503 by the
deadline), so a stalled S3 costs the caller seconds and never the API's shared thread pool.

A job is looked for in the archive only when Redis does not have it and its id says it is old
enough to have left (a UUIDv7 made before the hot window): an unknown fresh id stays a quick
404 that never waits on S3. Ownership holds as in Redis: the archive keeps each job's producer,
and another producer's job is "not found".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from config.settings import Settings
from producer import files
from workers.domain.errors import InvalidCursor
from workers.domain.jobs import JobRecord, State
from workers.domain.uuid7 import created_ms
from workers.io import archive
from workers.io.storage import Storage
from workers.redis.listing import JobPage


@dataclass(frozen=True)
class Match:
    """The listing filters, on archived records (``listing.Filters`` reads Redis hashes)."""

    state: State | None = None
    provider: str | None = None
    labels: Mapping[str, str] | None = None

    def __call__(self, record: JobRecord) -> bool:
        if self.state is not None and record.state != self.state:
            return False
        if self.provider is not None and record.provider != self.provider:
            return False
        labels = record.spec.get("labels") or {}
        return all(labels.get(k) == v for k, v in (self.labels or {}).items())


class History:
    """Reads (and the purge) of archived jobs, through the request path's S3."""

    def __init__(self, s3: files.RequestS3, settings: Settings) -> None:
        self.s3 = s3
        self.hot_ms = settings.hot_retention_s * 1000

    def may_hold(self, job_id: str) -> bool:
        """Whether the archive may hold the job: a UUIDv7 id made before the hot window (a
        younger job cannot have ended that long ago)."""
        made = created_ms(job_id)
        return made is not None and made <= time.time() * 1000 - self.hot_ms

    def find(self, job_id: str, producer: str | None = None) -> archive.Archived | None:
        """The archived job; None when it is not archived (or, with ``producer``, not its)."""
        if not self.may_hold(job_id):
            return None
        found = self.s3.call(archive.read, self.s3.storage, job_id)
        if found is None or (producer is not None and found.producer != producer):
            return None
        return found

    def page(
        self,
        day: date,
        producer: str | None,
        *,
        limit: int,
        cursor: str | None = None,
        match: Match | None = None,
    ) -> JobPage:
        """One page of the jobs archived under ``day`` (their creation day, UTC), oldest
        first, only ``producer``'s (None: everyone's). ``next_cursor`` (the last job id looked
        at) continues it; a page may be short, even empty, while more follow."""
        if cursor is not None and created_ms(cursor) is None:
            raise InvalidCursor("not a cursor this API handed out")
        listed, found = self.s3.call(_read_day, self.s3.storage, day, cursor, limit)
        keep = match or Match()
        records = [
            self.s3.presigned(item.record)
            for item in found
            if item is not None
            and (producer is None or item.producer == producer)
            and keep(item.record)
        ]
        following = listed.job_ids[-1] if listed.truncated and listed.job_ids else None
        return JobPage(jobs=records, next_cursor=following)

    def forget(self, job_id: str) -> None:
        """After a purge from Redis: delete the job's archived record too, if it may have one
        (an archiver that read the job just before the purge may have written it since)."""
        if self.may_hold(job_id):
            self.s3.call(archive.delete, self.s3.storage, job_id)

    def purge(self, found: archive.Archived) -> None:
        """Delete an archived job: its mirrored files first, then its archived record. A job
        that reused a result (``reused_from``) names the original's files: they are not its
        own to delete, only its record goes."""
        own = found.record.reused_from is None
        items = list((found.record.result or {}).values()) if own else []
        self.s3.call(_purge, self.s3.storage, items, found.record.id)


def _read_day(
    storage: Storage, day: date, after: str | None, limit: int
) -> tuple[archive.DayPage, list[archive.Archived | None]]:
    listed = archive.list_day(storage, day, after=after, limit=limit)
    return listed, archive.read_many(storage, listed.job_ids)


def _purge(storage: Storage, items: list[dict[str, Any]], job_id: str) -> None:
    files.delete(storage, items)
    archive.delete(storage, job_id)
