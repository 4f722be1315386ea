"""What a job costs in Redis, measured with ``MEMORY USAGE`` (the lean-records test and
``tests/bench_memory.py``).

A job's cost is its own keys (hash, timeline, idempotency key, its generation's reuse entry
when it points at the job) plus its share of every index it is a member of: the index's
``MEMORY USAGE`` divided by its number of members (members of one index cost alike). Keys that
do not grow with the number of jobs (counters, histograms, the broker's) are not counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from workers.domain.jobs import State
from workers.domain.reuse import generation_digest
from workers.redis import keys
from workers.redis.store import Store

# The lean-records targets (README "Lean records").
WAITING_TARGET = 1024
FINISHED_TARGET = 1536


@dataclass(frozen=True)
class Footprint:
    """Bytes per job, on average over the jobs measured, by part."""

    record: float  # hash and timeline
    keys: float  # idempotency key and reuse entry
    indexes: float  # shares of the listing, state, waiting and due indexes

    @property
    def total(self) -> float:
        return self.record + self.keys + self.indexes


def _usage(client: redis.Redis, key: str) -> int:
    return int(client.memory_usage(key, samples=0) or 0)


def _share(client: redis.Redis, index: str, job_id: str, cache: dict[str, float]) -> float:
    """The job's share of ``index`` (0 when it is not a member)."""
    kind = client.type(index).decode()
    member = (
        client.zscore(index, job_id) is not None
        if kind == "zset"
        else bool(client.sismember(index, job_id))
        if kind == "set"
        else False
    )
    if not member:
        return 0.0
    if index not in cache:
        count = client.zcard(index) if kind == "zset" else client.scard(index)
        cache[index] = _usage(client, index) / max(1, int(count))
    return cache[index]


def footprint(client: redis.Redis, job_ids: Sequence[str]) -> Footprint:
    """The average cost of these jobs (each in Redis now), by part."""
    store = Store(client)
    cache: dict[str, float] = {}
    records, extra, shares = [], [], []
    for job_id in job_ids:
        row = store.row(job_id)
        assert row is not None, f"job {job_id} is gone"
        records.append(_usage(client, keys.job(job_id)) + _usage(client, keys.events(job_id)))
        spec = row.spec
        producer = (client.hget(keys.job(job_id), "producer") or b"").decode()
        own = 0
        if spec.idempotency_key:
            own += _usage(client, keys.idempotency(spec.idempotency_key, producer=producer))
        reuse = keys.reuse(generation_digest(spec))
        if (client.get(reuse) or b"").endswith(f"/{job_id}".encode()):
            own += _usage(client, reuse)
        extra.append(own)
        indexes = [keys.all_jobs(), keys.by_producer(producer), keys.due()]
        indexes += [keys.by_state(s) for s in State]
        indexes.append(keys.waiting(row.provider, row.fair))
        shares.append(sum(_share(client, index, job_id, cache) for index in indexes))
    return Footprint(statistics.mean(records), statistics.mean(extra), statistics.mean(shares))


def listpack_limit(client: redis.Redis) -> int:
    """The server's ``hash-max-listpack-value`` (the largest value a compact hash holds)."""
    answer = client.config_get("hash-max-listpack-value")
    return int(next(iter(answer.values())))
