"""Every Redis key vidqueue uses, and every TTL, in one place.

Layout (all under ``vq:``):

- ``vq:job:{id}``            hash   the job record plus internal fields (see ``store``), its
  timeline included (field ``timeline``: compact entries, capped)
- ``vq:job:{id}:events``     list   the timeline as earlier versions stored it (JSON entries);
  still read, expired and removed with its job, never written for a new one
- ``vq:jobs``                zset   every job id, scored by creation time (ms) — for listing
- ``vq:state:{state}``       set    job ids in that state — for counts and filters
- ``vq:producer:{producer}`` zset  a producer's job ids, scored by creation time (ms)
- ``vq:producers``           set    the names of those producer zsets (for pruning)
- ``vq:idem:{producer}:{digest}`` string a producer's idempotency key → job id; ``digest``
  is the first 32 hex digits of the key's sha256 (fixed length, no ``:``, so a producer name
  with ``:`` in it cannot make two pairs meet). The same key from two producers is two keys.
  Keys of the layout before, ``vq:idem:{digest}``, are still read (never written) until they
  expire: one counts only for a job of the producer asking (``legacy_idempotency``).
- ``vq:seq``                 string a counter that orders jobs FIFO within a priority
- ``vq:wait:{provider}:{fair}`` zset jobs waiting for a slot, per fair-share key (the job's
  ``tenant`` label, else its producer), scored priority-then-FIFO
- ``vq:fair:{provider}``     zset   fair-share key → score of its first waiting job
- ``vq:inflight:{provider}`` hash   fair-share key → its jobs holding slots
- ``vq:gate:{provider}:{key}`` zset slot leases: member = job id, score = lease expiry (ms)
- ``vq:cap:{provider}:{key}`` string the key's effective cap while lowered (AIMD)
- ``vq:cool:{provider}:{key}`` string set while the key cools down after "concurrency too high"
- ``vq:rate:{provider}:{key}`` hash  the key's request token bucket
- ``vq:durations:{provider}:{model}`` list recent generation times (ms), newest first
- ``vq:stats:{provider}:{key}:{minute}`` hash requests per minute (submit, poll, download, 429,
  error)
- ``vq:hist:{metric}``       hash   histogram buckets, sum and count for /metrics
- ``vq:hist:{metric}:by_model`` hash the same per provider and model (fields prefixed by both)
- ``vq:series:{minute}``     hash   that minute's jobs finished and failed, provider 429s and
  errors, detection lag and submit delay sums and counts (``GET /v1/queue``; two hours)
- ``vq:due``                 zset   job id → when its step is to be published (a scheduled
  step) or checked (a sent or claimed one), ms: the due pollers' list (``workers.steps.due``)
- ``vq:callbacks:{provider}`` hash  provider callbacks received, by outcome (for /metrics)
- ``vq:ready:{host}:{pid}``  string an API process's readiness probe write (10 s TTL)
- ``vq:rejected_writes``     hash   writes Redis refused, by reason (for /metrics)
- ``vq:unknown_released:{provider}`` string how many submit_unknown jobs gave their slot back
  when their hold ran out (the provider may still bill them; for /metrics)
- ``vq:reuse:{digest}``      string ``{s}/{job id}``: the latest job of that generation that
  succeeded and was mirrored, and when (``workers.domain.reuse``; expires after a day)
- ``vq:reused``              hash   jobs that took a finished result, by provider (for /metrics)
- ``vq:mirrored:{provider}`` hash   bytes and objects mirrored into S3 (for /metrics)
- ``vq:hygiene``             string held between two storage-hygiene passes of the sweep
- ``vq:changes:{producer}`` stream a producer's job changes (creation, each new state),
  capped (``VIDQUEUE_EVENTS_MAXLEN``): the live events (``workers.redis.changes``)
- ``vq:archive:lock``        string held by the archiver pass running (``workers.steps.archive``)
- ``vq:archive:protected``   string the creation time (ms) up to which finished jobs past the
  hot window have had their TTL removed, so that only the archiver deletes them
- ``vq:archive:rescan``      string where the walk that does the same again, while S3 is down,
  stopped (it wraps around: jobs that ended long after they were made)

This module is the only place a key name is spelled. The Lua scripts (``store_scripts``,
``gate_scripts``, ``enqueue_scripts``, ``limiter``) get every key they can be told in advance in
KEYS, built here. A key a script can only name once it has read an id inside Redis (a job id
from a zset, a state from a hash) is its ``*_prefix()`` below plus that id: the prefixes come
in ARGV, and so do the schema's numbers (``PRIORITY_STRIDE``, ``PRODUCER_INDEX_SLACK_S``).
"""

from __future__ import annotations

import hashlib
from typing import Final

PREFIX: Final = "vq"

# A finished job's record (and timeline) is kept this long, then expires.
RECORD_TTL_S: Final = 14 * 24 * 3600
EVENTS_MAX: Final = 200
IDEMPOTENCY_TTL_S: Final = RECORD_TTL_S
# A producer index cannot tell which of its ids expired: pruning drops the ids created this
# long before the record TTL, surely gone by then.
PRODUCER_INDEX_SLACK_S: Final = 7 * 24 * 3600

# Waiting-set score = (9 - priority) * PRIORITY_STRIDE + sequence: higher priority first, then
# FIFO. 2**40 sequence numbers per priority, and 10 * 2**40 < 2**53 keeps scores exact.
PRIORITY_STRIDE: Final = 2**40


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def job_prefix() -> str:
    """``job(id) == job_prefix() + id``: for scripts that find job ids inside Redis."""
    return job("")


def events(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def all_jobs() -> str:
    return f"{PREFIX}:jobs"


def by_producer(producer: str) -> str:
    return f"{PREFIX}:producer:{producer}"


def producers() -> str:
    return f"{PREFIX}:producers"


def by_state(state: str) -> str:
    return f"{PREFIX}:state:{state}"


def state_prefix() -> str:
    """``by_state(s) == state_prefix() + s``: for scripts that read a job's state in Redis."""
    return by_state("")


def idempotency(key: str, *, producer: str = "") -> str:
    """A producer's idempotency key: another producer's same key is another Redis key. (The
    layout before producers were part of it was ``vq:idem:{digest}``, the same digest.)"""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{PREFIX}:idem:{producer}:{digest}"


def legacy_idempotency(key: str) -> str:
    """An idempotency key as the layout before producers were in it wrote it (one for every
    producer). Read only, by the create script, for the job of the producer asking; such keys
    expire ``IDEMPOTENCY_TTL_S`` after the upgrade at the latest, and this can go then."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{PREFIX}:idem:{digest}"


def sequence() -> str:
    return f"{PREFIX}:seq"


DEFAULT_FAIR: Final = "default"
# A lowered cap (and its memory) fades after this long without new evidence.
EFFECTIVE_CAP_TTL_S: Final = 3600
DURATIONS_KEPT: Final = 200
STATS_TTL_S: Final = 2 * 3600


def waiting(provider: str, fair: str = DEFAULT_FAIR) -> str:
    return f"{PREFIX}:wait:{provider}:{fair}"


def waiting_prefix(provider: str) -> str:
    """``waiting(provider, f) == waiting_prefix(provider) + f``: for dispatch, which picks the
    fair-share key inside Redis."""
    return waiting(provider, "")


def fair_queue(provider: str) -> str:
    return f"{PREFIX}:fair:{provider}"


def in_flight_by_fair(provider: str) -> str:
    return f"{PREFIX}:inflight:{provider}"


def effective_cap(provider: str, key_id: str) -> str:
    return f"{PREFIX}:cap:{provider}:{key_id}"


def cooling(provider: str, key_id: str) -> str:
    return f"{PREFIX}:cool:{provider}:{key_id}"


def rate(provider: str, key_id: str) -> str:
    return f"{PREFIX}:rate:{provider}:{key_id}"


def durations(provider: str, model: str) -> str:
    return f"{PREFIX}:durations:{provider}:{model}"


def stats(provider: str, key_id: str, minute: int) -> str:
    return f"{PREFIX}:stats:{provider}:{key_id}:{minute}"


def histogram(metric: str) -> str:
    return f"{PREFIX}:hist:{metric}"


def gate(provider: str, key_id: str) -> str:
    return f"{PREFIX}:gate:{provider}:{key_id}"


def ready_probe(host: str, pid: int) -> str:
    """An API process's readiness probe (a real write; expires 10 s after its last probe)."""
    return f"{PREFIX}:ready:{host}:{pid}"


def rejected_writes() -> str:
    """Writes Redis refused (out of memory, read-only, loading), by reason, over all processes."""
    return f"{PREFIX}:rejected_writes"


def callbacks(provider: str) -> str:
    return f"{PREFIX}:callbacks:{provider}"


def unknown_released(provider: str) -> str:
    return f"{PREFIX}:unknown_released:{provider}"


def due() -> str:
    return f"{PREFIX}:due"


def archive_lock() -> str:
    """Held (with a TTL) by the archiver pass running: two sweeps never archive at once."""
    return f"{PREFIX}:archive:lock"


def archive_protected() -> str:
    """Where the archiver's walk over ``all_jobs`` stopped taking TTLs off finished records."""
    return f"{PREFIX}:archive:protected"


def archive_rescan() -> str:
    """Where the archiver's second walk (only while S3 is down; it wraps around) stopped."""
    return f"{PREFIX}:archive:rescan"


def reuse(digest: str) -> str:
    """The reuse index entry of one generation (``workers.domain.reuse.generation_digest``)."""
    return f"{PREFIX}:reuse:{digest}"


def reused() -> str:
    return f"{PREFIX}:reused"


def mirrored(provider: str) -> str:
    return f"{PREFIX}:mirrored:{provider}"


def hygiene() -> str:
    """Set (with a TTL) when the sweep last cleaned storage: at most one pass per interval."""
    return f"{PREFIX}:hygiene"


def wait_score(priority: int, seq: int) -> int:
    return (9 - priority) * PRIORITY_STRIDE + seq


def series(minute: int) -> str:
    """One minute's figures for the dashboard's charts (``workers.redis.stats.Stats.series``): jobs
    finished and failed, provider 429s and errors, sums and counts of detection lag and submit
    delay, over every provider; expires after ``STATS_TTL_S``."""
    return f"{PREFIX}:series:{minute}"


def histogram_by_model(metric: str) -> str:
    """One histogram per provider and model, in one hash: each field is the provider, the model
    and the histogram's field joined by U+001F (``workers.redis.stats.labelled_field``), so one
    HGETALL reads every pair (no TTL: counters)."""
    return f"{PREFIX}:hist:{metric}:by_model"


# The change stream's default cap (``VIDQUEUE_EVENTS_MAXLEN``; trimmed with ``MAXLEN ~``).
CHANGES_MAXLEN: Final = 10_000


def changes(producer: str) -> str:
    """A producer's change stream: one entry (``id``, ``state``, ``at``, ``provider``,
    ``model``) per job created or moved to another state, capped (``workers.redis.changes``)."""
    return f"{PREFIX}:changes:{producer}"


def changes_prefix() -> str:
    """``changes(p) == changes_prefix() + p``: for scripts that read a job's producer."""
    return changes("")
