"""Counters and histograms for `vidqueue top` and the API's /metrics, aggregated in process and
written to Redis in batches.

Per API key and minute: submits, polls, downloads, provider 429s and provider request errors
(hashes that expire after two hours), and the same per API key since the start
(``requests_key``: counters that never expire, for Prometheus' ``rate()``). Per provider: the
bytes and objects mirrored into S3 (counters that never expire).
Per metric: a Prometheus-style histogram, in total and per provider and model (one hash per
metric, ``keys.histogram_by_model``). Per provider and model: the recent generation times, from
which the first poll's timing is learned.
Per minute, over every provider (``keys.series``, two hours): the dashboard's charts of the last
hour (``Stats.series``): jobs succeeded and failed, provider 429s and errors, and the sums and
counts behind the mean detection lag and submit delay. They ride on the figures above (a 429
counted for its key, a histogram observation, a job's end) in the same batched write: no step
makes an extra round trip for them.

A step never waits on Redis for a figure: ``count`` and ``observe`` add to dicts in this
process, and one pipeline (an HINCRBY or HINCRBYFLOAT per changed field, an EXPIRE per changed
per-minute hash) writes them at most every ``flush_interval_s`` (a one-shot daemon thread
armed by the first figure after a flush), on ``Stats.flush()``, before a read, at exit
(``atexit``) and when a Celery pool process ends (its ``os._exit`` skips ``atexit``). A forked
child starts with empty buffers: the figures it inherited are its parent's to write. Figures
that fail to be written stay buffered for the next flush. Readers lag writers by at most the
interval (plus a Redis outage).

Histograms are stored non-cumulatively: ``n:{bound}`` counts the observations in the bucket
(previous bound, bound], plus ``sum`` and ``count`` (observations above the last bound are in
``count`` only); ``histogram()`` returns cumulative Prometheus buckets (``le:{bound}``), adding
any cumulative ``le:`` fields left by the earlier one-HINCRBY-per-bucket format.

Redis refusing writes (``retry.REJECTED_WRITES``: out of memory, read-only, loading) is counted
by reason: ``note_rejected`` adds it to a ``Stats`` buffer of the process, whose flush lands it
in ``rejected_key()`` once Redis takes writes again. ``Stats.rejected`` reads that total plus
its own buffer: the API's /metrics shows its own refusals during an outage, and the workers'
once it is over.

Why the figures are not kept in prometheus_client's own metric objects: its multiprocess mode
aggregates through files in one directory that every process shares, i.e. one host. Workers run
in many containers on many hosts and every API process serves /metrics for all of them, so Redis
stays the place where the figures meet; the API renders them with prometheus_client at scrape
time (``producer.metrics``, ``workers.observe``).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

import redis
from celery.signals import worker_process_shutdown

from workers.domain.errors import (
    CONCURRENCY_LIMITED,
    PROVIDER_PROTOCOL,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    SubmitOutcomeUnknown,
    Throttled,
    VidqueueError,
)
from workers.domain.retry import rejected_write
from workers.redis import keys

log = logging.getLogger(__name__)

BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HISTOGRAMS: Final = {
    "time_to_submit": "from enqueue to the provider accepting the job",
    "generation": "from submit to vidqueue seeing the provider finish",
    "mirror": "from the provider finishing to the files being in S3",
    "detection_lag": "from the provider finishing (its own timestamp) to vidqueue seeing it",
}
# Per key: requests by kind, and what went wrong with them ("throttled": the provider's 429 or
# "concurrency too high"; "error": 5xx, timeouts, refused connections, garbled answers).
COUNTERS: Final = ("submit", "poll", "download", "throttled", "error")
# The per-minute series (``Stats.series``): counts, and the histograms whose mean it shows.
SERIES_MINUTES: Final = 60
SERIES_COUNTS: Final = ("finished", "failed", "throttled", "errors")
SERIES_MEANS: Final = {"detection_lag": "detection_lag_s", "time_to_submit": "submit_delay_s"}
# Which ``Stats.count`` kinds and which job endings feed a series count.
_SERIES_OF_COUNTER: Final = {"throttled": "throttled", "error": "errors"}
_SERIES_OF_ENDING: Final = {"succeeded": "finished", "failed": "failed"}
# Joins provider, model and field in a labelled histogram's hash (no name holds it).
LABEL_SEP: Final = "\x1f"
FLUSH_INTERVAL_S: Final = 1.0
REJECT_REASONS: Final = ("oom", "readonly", "loading")


def rejected_key() -> str:
    """The hash of refused writes by reason, summed over every process (no TTL: a counter)."""
    return keys.rejected_writes()


def requests_key(provider: str, key_id: str) -> str:
    """The hash of provider requests made with one key, by kind, since the start (no TTL: a
    counter). Spelled here, beside the per-minute hashes it totals, on ``keys.PREFIX``."""
    return f"{keys.PREFIX}:requests:{provider}:{key_id}"


def note_rejected(exc: BaseException) -> str | None:
    """Count ``exc`` if it is Redis refusing a write; returns its reason (None: not one)."""
    reason = rejected_write(exc)
    if reason is None:
        return None
    # One ``Stats`` of the process carries it to Redis (two would count it twice).
    carrier = next(iter(list(_instances)), None)
    if carrier is not None:
        carrier.add(rejected_key(), reason)
    return reason


def trouble(exc: BaseException) -> str | None:
    """What a failed provider request counts as: ``"throttled"`` (the provider's 429 or
    "concurrency too high"), ``"error"`` (5xx, timeout, refused connection, garbled answer, a
    submit left without an answer), or None (an answer such as a 4xx, or vidqueue's own rate
    limiter putting the step off: no request was made)."""
    if isinstance(exc, Throttled) or not isinstance(exc, VidqueueError):
        return None
    if isinstance(exc, SubmitOutcomeUnknown) or exc.code in (
        PROVIDER_UNAVAILABLE,
        PROVIDER_PROTOCOL,
    ):
        return "error"
    if exc.code in (RATE_LIMITED, CONCURRENCY_LIMITED):
        return "throttled"
    return None


def labelled_field(provider: str, model: str, field: str) -> str:
    """A field of ``keys.histogram_by_model``: provider, model and the histogram's field."""
    return LABEL_SEP.join((provider, model, field))


def minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


def cumulative(fields: dict[str, float]) -> dict[str, float]:
    """Prometheus buckets (``le:{bound}``, ``sum``, ``count``) from a stored histogram hash."""
    if not fields:
        return {}
    out = {"sum": fields.get("sum", 0.0), "count": fields.get("count", 0.0)}
    running = 0.0
    for bound in BUCKETS:
        running += fields.get(f"n:{bound}", 0.0)
        out[f"le:{bound}"] = running + fields.get(f"le:{bound}", 0.0)
    return out


@dataclass(frozen=True)
class Series:
    """The last minutes, oldest first: each minute's start (epoch seconds) and its figures over
    every provider; a mean is None for a minute without an observation."""

    minutes: list[int]
    finished: list[int]
    failed: list[int]
    throttled: list[int]
    errors: list[int]
    detection_lag_s: list[float | None]
    submit_delay_s: list[float | None]

    def as_dict(self) -> dict[str, list[int] | list[float | None]]:
        return {name: list(getattr(self, name)) for name in self.__dataclass_fields__}


def _series(starts: list[int], hashes: list[dict[bytes, bytes]]) -> Series:
    def counts(name: str) -> list[int]:
        return [int(float(h.get(name.encode(), 0))) for h in hashes]

    def means(metric: str) -> list[float | None]:
        out: list[float | None] = []
        for h in hashes:
            n = float(h.get(f"{metric}_count".encode(), 0))
            out.append(float(h.get(f"{metric}_sum".encode(), 0)) / n if n else None)
        return out

    return Series(
        minutes=starts,
        finished=counts("finished"),
        failed=counts("failed"),
        throttled=counts("throttled"),
        errors=counts("errors"),
        detection_lag_s=means("detection_lag"),
        submit_delay_s=means("time_to_submit"),
    )


class _Buffer:
    """Figures not yet written: integer and float increments per hash field, hashes to expire."""

    def __init__(self) -> None:
        self.ints: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.floats: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.expire: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.ints or self.floats)

    def merge(self, other: _Buffer) -> None:
        for name, fields in other.ints.items():
            for field, n in fields.items():
                self.ints[name][field] += n
        for name, values in other.floats.items():
            for field, x in values.items():
                self.floats[name][field] += x
        self.expire |= other.expire

    def write(self, client: redis.Redis) -> int:
        """One pipeline, one round trip; returns the number of commands sent."""
        pipe = client.pipeline(transaction=False)
        for name, fields in self.ints.items():
            for field, n in fields.items():
                pipe.hincrby(name, field, n)
        for name, values in self.floats.items():
            for field, x in values.items():
                pipe.hincrbyfloat(name, field, x)
        for name in self.expire:
            pipe.expire(name, keys.STATS_TTL_S)
        sent = len(pipe)
        pipe.execute()
        return sent


class Stats:
    """Thread-safe; ``flush_interval_s <= 0`` writes every figure at once (no buffering)."""

    def __init__(self, client: redis.Redis, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.redis = client
        self.flush_interval_s = flush_interval_s
        self._reset()
        _instances.add(self)

    def _reset(self) -> None:
        """Fresh locks and empty buffers (also in a forked child: locks may be held by threads
        that do not exist there, and the buffered figures are the parent's to write)."""
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._buffer = _Buffer()
        self._armed = False
        self._failing = False

    def count(self, provider: str, key_id: str, what: str, n: int = 1) -> None:
        now = minute()
        name = keys.stats(provider, key_id, now)
        series = _SERIES_OF_COUNTER.get(what)
        with self._lock:
            self._buffer.ints[name][what] += n
            self._buffer.expire.add(name)
            self._buffer.ints[requests_key(provider, key_id)][what] += n
            if series is not None:
                self._add_series(now, series, n)
            self._arm()
        if self.flush_interval_s <= 0:
            self.flush()

    def count_trouble(self, provider: str, key_id: str, exc: BaseException) -> str | None:
        """Count a failed provider request by what it was (``trouble``); returns that."""
        what = trouble(exc)
        if what is not None:
            self.count(provider, key_id, what)
        return what

    def count_ended(self, state: str) -> None:
        """A job reached ``state``: a succeeded or failed one counts in this minute's series."""
        series = _SERIES_OF_ENDING.get(state)
        if series is None:
            return
        with self._lock:
            self._add_series(minute(), series, 1)
            self._arm()
        if self.flush_interval_s <= 0:
            self.flush()

    def _add_series(self, at: int, field: str, n: int) -> None:
        """Called with the lock held."""
        name = keys.series(at)
        self._buffer.ints[name][field] += n
        self._buffer.expire.add(name)

    def add(self, name: str, field: str, n: int = 1) -> None:
        """Add ``n`` to a field of a counter hash that never expires, at the next flush."""
        with self._lock:
            self._buffer.ints[name][field] += n
            self._arm()

    def count_mirrored(self, provider: str, size: int, objects: int) -> None:
        """Bytes and objects a mirror put into S3 (counters that never expire)."""
        name = keys.mirrored(provider)
        with self._lock:
            self._buffer.ints[name]["bytes"] += size
            self._buffer.ints[name]["objects"] += objects
            self._arm()
        if self.flush_interval_s <= 0:
            self.flush()

    def mirrored(self, provider: str) -> dict[str, int]:
        """What was mirrored for ``provider``: ``bytes`` and ``objects`` (every process's
        figures once flushed, this one's at once)."""
        self._try_flush()
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.mirrored(provider))  # type: ignore[assignment]
        stored = {k.decode(): int(v) for k, v in raw.items()}
        return {what: stored.get(what, 0) for what in ("bytes", "objects")}

    def rejected(self) -> dict[str, int]:
        """Refused writes by reason: what every process flushed, plus what this one has not
        flushed yet (Redis may be refusing that very flush: read anyway)."""
        self._try_flush()
        raw: dict[bytes, bytes] = self.redis.hgetall(rejected_key())  # type: ignore[assignment]
        stored = {k.decode(): int(v) for k, v in raw.items()}
        with self._lock:
            pending = dict(self._buffer.ints.get(rejected_key(), {}))
        return {r: stored.get(r, 0) + pending.get(r, 0) for r in REJECT_REASONS}

    def _try_flush(self) -> None:
        """Flush before a read; a Redis that refuses writes may still answer the read."""
        try:
            self.flush()
        except redis.RedisError as exc:
            if rejected_write(exc) is None:
                raise

    def observe(
        self, metric: str, seconds: float, *, provider: str | None = None, model: str = ""
    ) -> None:
        """One observation of a histogram: in its total, and per provider and model when a
        provider is given; detection lag and time to submit also in this minute's series."""
        seconds = max(0.0, seconds)
        index = bisect.bisect_left(BUCKETS, seconds)
        bucket = f"n:{BUCKETS[index]}" if index < len(BUCKETS) else None
        now = minute()
        with self._lock:
            self._add_observation(keys.histogram(metric), "", bucket, seconds)
            if provider is not None:
                prefix = labelled_field(provider, model, "")
                self._add_observation(keys.histogram_by_model(metric), prefix, bucket, seconds)
            if metric in SERIES_MEANS:
                self._add_series(now, f"{metric}_count", 1)
                self._buffer.floats[keys.series(now)][f"{metric}_sum"] += seconds
            self._arm()
        if self.flush_interval_s <= 0:
            self.flush()

    def _add_observation(self, name: str, prefix: str, bucket: str | None, x: float) -> None:
        """Called with the lock held: one observation into the hash ``name``, its fields
        named with ``prefix``."""
        fields = self._buffer.ints[name]
        if bucket is not None:
            fields[prefix + bucket] += 1
        fields[prefix + "count"] += 1
        self._buffer.floats[name][prefix + "sum"] += x

    def _arm(self) -> None:
        """Called with the lock held: make sure a flush is coming (unbuffered: the caller's)."""
        if self.flush_interval_s > 0 and not self._armed:
            self._armed = True
            threading.Thread(target=self._flush_later, name="vidqueue-stats", daemon=True).start()

    def _flush_later(self) -> None:
        time.sleep(self.flush_interval_s)
        try:
            self.flush()
            self._failing = False
        except redis.RedisError as exc:
            # Retried every interval: said once per outage, not once a second.
            if not self._failing:
                log.warning("stats: flush failed, figures kept until Redis takes them: %s", exc)
            self._failing = True

    def flush(self) -> int:
        """Write every buffered figure in one pipeline; returns the number of commands sent.

        On a Redis error the figures go back into the buffer (a retry is armed) and it raises.
        """
        with self._flushing:
            with self._lock:
                buffer, self._buffer = self._buffer, _Buffer()
                self._armed = False
            if not buffer:
                return 0
            try:
                return buffer.write(self.redis)
            except BaseException:
                with self._lock:
                    buffer.merge(self._buffer)
                    self._buffer = buffer
                    self._arm()
                raise

    def per_minute(self, provider: str, key_id: str) -> dict[str, float]:
        """Each counter over the last 60 s (the previous minute weighted by what is left)."""
        self._try_flush()
        now = time.time()
        share = 1 - (now % 60) / 60
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.stats(provider, key_id, minute(now)))
        pipe.hgetall(keys.stats(provider, key_id, minute(now) - 1))
        current, previous = pipe.execute()
        return {
            what: int(current.get(what.encode(), 0)) + share * int(previous.get(what.encode(), 0))
            for what in COUNTERS
        }

    def requests(self, provider: str, key_id: str) -> dict[str, int]:
        """Each counter since the start (every process's figures once flushed, this one's at
        once): Prometheus counters, where ``per_minute`` is a gauge."""
        self._try_flush()
        raw: dict[bytes, bytes] = self.redis.hgetall(requests_key(provider, key_id))  # type: ignore[assignment]
        return {what: int(raw.get(what.encode(), 0)) for what in COUNTERS}

    def histogram(self, metric: str) -> dict[str, float]:
        """Cumulative buckets ``le:{bound}``, ``sum`` and ``count`` ({} before any figure)."""
        self._try_flush()
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.histogram(metric))  # type: ignore[assignment]
        return cumulative({k.decode(): float(v) for k, v in raw.items()})

    def histograms_by_model(self, metric: str) -> dict[tuple[str, str], dict[str, float]]:
        """``histogram`` per (provider, model) that has an observation."""
        self._try_flush()
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.histogram_by_model(metric))  # type: ignore[assignment]
        pairs: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for key, value in raw.items():
            provider, rest = key.decode().split(LABEL_SEP, 1)
            model, field = rest.rsplit(LABEL_SEP, 1)
            pairs[provider, model][field] = float(value)
        return {pair: cumulative(fields) for pair, fields in sorted(pairs.items())}

    def series(self, minutes: int = SERIES_MINUTES, now: float | None = None) -> Series:
        """The last ``minutes`` minutes (the current one, still filling, last): one pipeline."""
        self._try_flush()
        last = minute(now)
        span = range(last - minutes + 1, last + 1)
        pipe = self.redis.pipeline(transaction=False)
        for at in span:
            pipe.hgetall(keys.series(at))
        return _series([at * 60 for at in span], pipe.execute())

    def record_duration(self, provider: str, model: str, seconds: float) -> None:
        """Written at once: the next job's first poll is timed from these."""
        name = keys.durations(provider, model)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(name, int(seconds * 1000))
        pipe.ltrim(name, 0, keys.DURATIONS_KEPT - 1)
        pipe.execute()

    def durations(self, provider: str, model: str) -> list[float]:
        raw: list[bytes] = self.redis.lrange(keys.durations(provider, model), 0, -1)  # type: ignore[assignment]
        return [int(x) / 1000 for x in raw]


_instances: weakref.WeakSet[Stats] = weakref.WeakSet()


def flush_all(**_: Any) -> None:
    """Write what every ``Stats`` of this process holds (at exit; errors are only logged)."""
    for stats in list(_instances):
        try:
            stats.flush()
        except Exception as exc:  # exiting: nothing else to do with it
            log.warning("stats: figures lost at exit: %s", exc)


def _after_fork_in_child() -> None:
    for stats in list(_instances):
        stats._reset()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
# A Celery prefork pool process leaves through os._exit, after this signal.
worker_process_shutdown.connect(flush_all, weak=False)
