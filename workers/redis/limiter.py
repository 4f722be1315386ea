"""A request rate limit per API key, shared by every worker: a token bucket in Redis.

Celery's own ``rate_limit`` is per worker process, so it cannot keep a provider's global limit.
Every request vidqueue makes with a key — submit, poll, and downloads from the provider's API —
takes a token first. A step that finds the bucket empty waits briefly in place, or is put off
(``Throttled``) without counting as a failed attempt.
"""

from __future__ import annotations

import time
from typing import Final

import redis

from config.providers import ProviderConfig
from workers.domain.errors import Throttled
from workers.redis import keys
from workers.redis.store_scripts import NOW

# KEYS[1] = bucket hash {tokens, at}. ARGV[1] = rate per second, ARGV[2] = burst (a full
# bucket). Returns 0 when a token was taken, else the ms until one will be there (nothing
# taken).
TAKE: Final = (
    NOW
    + """
local bucket = KEYS[1]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', bucket, 'tokens') or burst)
local at = tonumber(redis.call('HGET', bucket, 'at') or now)
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', bucket, 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
return wait
"""
)
# Waits up to this long in place for a token; longer waits put the step off.
MAX_INLINE_WAIT_S: Final = 0.5


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(TAKE)

    def try_take(self, config: ProviderConfig, key_id: str) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        rate = config.requests_per_second
        burst = max(1.0, rate)
        wait_ms = self._take(keys=[keys.rate(config.name, key_id)], args=[rate, burst])
        return int(wait_ms) / 1000

    def take(self, config: ProviderConfig, key_id: str) -> None:
        """Take a token, waiting up to ``MAX_INLINE_WAIT_S``; else raise ``Throttled``."""
        waited = 0.0
        while (wait := self.try_take(config, key_id)) > 0:
            if waited + wait > MAX_INLINE_WAIT_S:
                raise Throttled(f"{config.name}: request rate limit", retry_after_s=wait)
            time.sleep(wait)
            waited += wait
