"""Every Redis key vidqueue uses, and every TTL, in one place.

Layout (all under ``vq:``):

- ``vq:job:{id}``            hash   the job record plus internal fields (see ``store``)
- ``vq:job:{id}:events``     list   the job's timeline (JSON entries), capped
- ``vq:jobs``                zset   every job id, scored by creation time (ms) — for listing
- ``vq:state:{state}``       set    job ids in that state — for counts and filters
- ``vq:producer:{producer}`` zset  a producer's job ids, scored by creation time (ms)
- ``vq:producers``           set    the names of those producer zsets (for pruning)
- ``vq:idem:{key}``          string idempotency key → job id
- ``vq:seq``                 string a counter that orders jobs FIFO within a priority
- ``vq:wait:{provider}``     zset   jobs waiting for a slot, scored priority-then-FIFO
- ``vq:gate:{provider}:{key}`` zset slot leases: member = job id, score = lease expiry (ms)
- ``vq:due``                 zset   job id → when its next step is overdue (ms); the sweep's list
"""

from __future__ import annotations

import hashlib
from typing import Final

PREFIX: Final = "vq"

# A finished job's record (and timeline) is kept this long, then expires.
RECORD_TTL_S: Final = 14 * 24 * 3600
EVENTS_MAX: Final = 200
IDEMPOTENCY_TTL_S: Final = RECORD_TTL_S

# Waiting-set score = (9 - priority) * PRIORITY_STRIDE + sequence: higher priority first, then
# FIFO. 2**40 sequence numbers per priority, and 10 * 2**40 < 2**53 keeps scores exact.
PRIORITY_STRIDE: Final = 2**40


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def events(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def all_jobs() -> str:
    return f"{PREFIX}:jobs"


def by_producer(producer: str) -> str:
    return f"{PREFIX}:producer:{producer}"


def by_state(state: str) -> str:
    return f"{PREFIX}:state:{state}"


def idempotency(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{PREFIX}:idem:{digest}"


def sequence() -> str:
    return f"{PREFIX}:seq"


def waiting(provider: str) -> str:
    return f"{PREFIX}:wait:{provider}"


def gate(provider: str, key_id: str) -> str:
    return f"{PREFIX}:gate:{provider}:{key_id}"


def due() -> str:
    return f"{PREFIX}:due"


def wait_score(priority: int, seq: int) -> int:
    return (9 - priority) * PRIORITY_STRIDE + seq
