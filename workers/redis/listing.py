"""Read-side queries over the job indexes: pages of a producer's jobs, and many records at once.

The listing indexes (``workers.redis.keys``: ``vq:producer:{producer}``, ``vq:jobs``) are sorted
sets scored by creation time in ms. A page continues *by rank after the last id seen*, not by
score, so jobs created in the same millisecond (a batch makes thousands) are never repeated or
skipped. Ids whose record expired may linger in an index until the sweep prunes them: they are
skipped. Filters are applied to the records read, with a budget of index entries per page, so a
filter that matches little returns short pages (with a cursor) instead of scanning everything.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import redis
from pydantic import BaseModel

from workers.domain.errors import InvalidCursor
from workers.domain.jobs import JobRecord, State
from workers.redis import keys
from workers.redis.store import record_from

CHUNK: Final = 200
# Index entries looked at per page at most; a sparse filter gets a short page and a cursor.
SCAN_BUDGET: Final = 5000


class JobPage(BaseModel):
    """One page of jobs, newest first; ``next_cursor`` is None on the last page."""

    jobs: list[JobRecord]
    next_cursor: str | None = None


@dataclass(frozen=True)
class Filters:
    state: State | None = None
    provider: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def match(self, fields: Mapping[str, str]) -> bool:
        if self.state is not None and fields.get("state") != self.state:
            return False
        if self.provider is not None and fields.get("provider") != self.provider:
            return False
        if not self.labels:
            return True
        labels = json.loads(fields.get("spec") or "{}").get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last index entry it covered."""

    job_id: str
    score: float

    def encode(self) -> str:
        raw = json.dumps({"i": self.job_id, "s": self.score}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data = json.loads(raw)
            position = cls(str(data["i"]), float(data["s"]))
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise InvalidCursor("not a cursor this API handed out") from None
        if not math.isfinite(position.score):
            raise InvalidCursor("not a cursor this API handed out")
        return position


@dataclass(frozen=True)
class Scan:
    """The records of one page, and where to continue (None = the end)."""

    records: list[JobRecord]
    next: Position | None


def index(producer: str | None) -> str:
    """The listing index of ``producer``'s jobs; None: every producer's (an operator's view)."""
    return keys.all_jobs() if producer is None else keys.by_producer(producer)


def scan(
    client: redis.Redis,
    producer: str | None,
    *,
    limit: int,
    after: Position | str | None = None,
    ascending: bool = False,
    filters: Filters | None = None,
) -> Scan:
    """Up to ``limit`` matching records of ``producer``'s jobs (None: everyone's) after
    ``after`` (a position, or just a job id, as OpenAI's ``after`` is), newest first unless
    ``ascending``."""
    filters = filters or Filters()
    where = index(producer)
    rank = _start(client, where, after, ascending)
    found: list[JobRecord] = []
    last: Position | None = None
    looked = 0
    while looked < SCAN_BUDGET:
        entries = _entries(client, where, rank, CHUNK, ascending)
        if not entries:
            return Scan(found, None)
        for (job_id, score), fields in zip(
            entries, rows(client, [e[0] for e in entries]), strict=True
        ):
            looked += 1
            if fields is not None and filters.match(fields):
                if len(found) == limit:
                    return Scan(found, last)
                found.append(record_from(fields))
            last = Position(job_id, score)
        rank += len(entries)
    return Scan(found, last)


def _start(client: redis.Redis, index: str, after: Position | str | None, ascending: bool) -> int:
    if after is None:
        return 0
    job_id = after if isinstance(after, str) else after.job_id
    rank = client.zrank(index, job_id) if ascending else client.zrevrank(index, job_id)
    if rank is not None:
        return int(rank) + 1  # type: ignore[arg-type]
    if isinstance(after, str):
        raise InvalidCursor(f"no job {after} in this listing")
    # The entry is gone (expired or deleted): continue strictly past its creation time.
    if ascending:
        return int(client.zcount(index, "-inf", after.score))
    return int(client.zcount(index, after.score, "+inf"))


def _entries(
    client: redis.Redis, index: str, rank: int, count: int, ascending: bool
) -> list[tuple[str, float]]:
    raw: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
        index, rank, rank + count - 1, desc=not ascending, withscores=True
    )
    return [(member.decode(), float(score)) for member, score in raw]


def rows(client: redis.Redis, job_ids: Iterable[str]) -> list[dict[str, str] | None]:
    """Each job's hash fields (None where the record is gone), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(keys.job(job_id))
    out: list[dict[str, str] | None] = []
    for raw in pipe.execute():
        out.append({k.decode(): v.decode() for k, v in raw.items()} if raw else None)
    return out
