"""The reuse index: the latest success of each generation, for specs with ``reuse_within_s``.

When a job has succeeded and its files are in S3, the mirror registers it under its
generation's digest (``workers.domain.reuse``): ``vq:reuse:{digest}`` = ``{s}/{job id}``
(seconds: short enough for Redis to keep the value inline), the moment taken from Redis
``TIME`` so that the window is measured on one clock. The entry expires
after ``REUSE_MAX_S``, the longest window a spec may ask for, so the index holds one day of
successes at most. The lookup is part of the CREATE script (``workers.redis.enqueue_scripts``),
atomic with the creation; it takes a result only from a job still succeeded in Redis (not
purged, not archived away), of the same provider and model.

Every success is registered, not only those that asked for reuse: the first job of a
generation does not know that a later one will ask.
"""

from __future__ import annotations

from typing import Final

import redis

from workers.domain.jobs import JobSpec, State
from workers.domain.reuse import REUSE_MAX_S, generation_digest
from workers.redis import keys
from workers.redis.store_scripts import NOW

# KEYS[1] = job hash, KEYS[2] = its generation's reuse key. ARGV[1] = job id, ARGV[2] = TTL s,
# ARGV[3] = the succeeded state. Registers the job only while it is succeeded with its result;
# returns 1 when registered.
REGISTER: Final = (
    NOW
    + """
local job_key, reuse_key = KEYS[1], KEYS[2]
local job_id, ttl, succeeded = ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', job_key, 'state', 'result')
if f[1] ~= succeeded or not f[2] then return 0 end
redis.call('SET', reuse_key, math.floor(now / 1000) .. '/' .. job_id, 'EX', tonumber(ttl))
return 1
"""
)


class ReuseIndex:
    """Registers successes, and reads how many jobs took a finished result."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._register = client.register_script(REGISTER)

    def register(self, job_id: str, spec: JobSpec) -> bool:
        """Make the job's result findable by later jobs of the same generation."""
        script_keys = [keys.job(job_id), keys.reuse(generation_digest(spec))]
        argv: list[str | int] = [job_id, REUSE_MAX_S, str(State.SUCCEEDED)]
        return bool(self._register(keys=script_keys, args=argv))

    def reused(self) -> dict[str, int]:
        """Jobs that took a finished result instead of generating, by provider."""
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.reused())  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}
