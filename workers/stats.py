"""Counters and histograms in Redis, for `vidqueue top` and the API's /metrics.

Per API key and minute: submits, polls, downloads and 429s (hashes that expire after two
hours). Per metric: a Prometheus-style histogram (bucket counts, sum, count). Per provider and
model: the recent generation times, from which the first poll's timing is learned.
"""

from __future__ import annotations

import time
from typing import Final

import redis

from workers import keys

BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HISTOGRAMS: Final = {
    "time_to_submit": "from enqueue to the provider accepting the job",
    "generation": "from submit to vidqueue seeing the provider finish",
    "mirror": "from the provider finishing to the files being in S3",
    "detection_lag": "from the provider finishing (its own timestamp) to vidqueue seeing it",
}
COUNTERS: Final = ("submit", "poll", "download", "throttled")


def minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


class Stats:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def count(self, provider: str, key_id: str, what: str, n: int = 1) -> None:
        name = keys.stats(provider, key_id, minute())
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(name, what, n)
        pipe.expire(name, keys.STATS_TTL_S)
        pipe.execute()

    def per_minute(self, provider: str, key_id: str) -> dict[str, float]:
        """Each counter over the last 60 s (the previous minute weighted by what is left)."""
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

    def observe(self, metric: str, seconds: float) -> None:
        name = keys.histogram(metric)
        pipe = self.redis.pipeline(transaction=False)
        for bound in BUCKETS:
            if seconds <= bound:
                pipe.hincrby(name, f"le:{bound}", 1)
        pipe.hincrbyfloat(name, "sum", max(0.0, seconds))
        pipe.hincrby(name, "count", 1)
        pipe.execute()

    def histogram(self, metric: str) -> dict[str, float]:
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.histogram(metric))  # type: ignore[assignment]
        return {k.decode(): float(v) for k, v in raw.items()}

    def record_duration(self, provider: str, model: str, seconds: float) -> None:
        name = keys.durations(provider, model)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(name, int(seconds * 1000))
        pipe.ltrim(name, 0, keys.DURATIONS_KEPT - 1)
        pipe.execute()

    def durations(self, provider: str, model: str) -> list[float]:
        raw: list[bytes] = self.redis.lrange(keys.durations(provider, model), 0, -1)  # type: ignore[assignment]
        return [int(x) / 1000 for x in raw]
