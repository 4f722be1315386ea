"""The per-process dependencies of the pipeline, built once (after fork in workers).

Everything the step functions touch is reached through ``Deps``, so tests can build one
against their own Redis, S3 and simulator, and no client is created at import time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import httpx
import redis

from config import providers as provider_config
from config.providers import ApiKey, Catalogue, ProviderConfig
from config.settings import Settings
from workers.domain.errors import ConfigError
from workers.io.storage import Storage
from workers.providers import build as build_provider
from workers.providers.base import VideoProvider
from workers.redis.connect import connect
from workers.redis.gate import Gate
from workers.redis.limiter import RateLimiter
from workers.redis.replicas import Replication
from workers.redis.stats import Stats
from workers.redis.store import Store

DURATIONS_REFRESH_S: Final = 30.0


@dataclass
class Deps:
    settings: Settings
    catalogue: Catalogue
    redis: redis.Redis
    store: Store
    gate: Gate
    _providers: dict[str, VideoProvider] = field(default_factory=dict)
    _keys: dict[tuple[str, str], ApiKey] = field(default_factory=dict)
    _durations: dict[tuple[str, str], tuple[float, list[float]]] = field(default_factory=dict)

    def config(self, provider: str) -> ProviderConfig:
        return self.catalogue.get(provider)

    def provider(self, name: str) -> VideoProvider:
        if name not in self._providers:
            self._providers[name] = build_provider(self.catalogue.get(name), self.http)
        return self._providers[name]

    def key(self, provider: str, key_id: str) -> ApiKey:
        """The API key that holds a job's slot (a job is always polled with the same key)."""
        if (provider, key_id) not in self._keys:
            for key in self.catalogue.keys(provider):
                self._keys[(provider, key.id)] = key
        try:
            return self._keys[(provider, key_id)]
        except KeyError:
            raise ConfigError(
                f"providers.{provider}: key {key_id} is no longer configured"
            ) from None

    @cached_property
    def longest_request_s(self) -> float:
        """The longest request timeout of any provider: a step claims its job for a lease
        derived from it before it has read which provider the job is for (one read less)."""
        return max((c.request_timeout_s for c in self.catalogue.providers.values()), default=30.0)

    def recent_durations(self, provider: str, model: str) -> list[float]:
        """The model's recent generation times (for the first poll's timing), read from Redis
        at most every ``DURATIONS_REFRESH_S`` per process: they change slowly, and a submit
        should not read 200 numbers each time."""
        now = time.monotonic()
        cached = self._durations.get((provider, model))
        if cached is None or cached[0] < now:
            cached = (now + DURATIONS_REFRESH_S, self.stats.durations(provider, model))
            self._durations[(provider, model)] = cached
        return cached[1]

    @cached_property
    def http(self) -> httpx.Client:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        return httpx.Client(limits=limits, timeout=httpx.Timeout(30.0, connect=10.0))

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis)

    @cached_property
    def stats(self) -> Stats:
        return Stats(self.redis)


def build(settings: Settings, catalogue: Catalogue | None = None) -> Deps:
    client = connect(settings)
    replication = Replication(settings.replicas_to_wait, settings.redis_wait_timeout_ms)
    return Deps(
        settings=settings,
        catalogue=catalogue or provider_config.load(settings.providers_file),
        redis=client,
        store=Store(
            client,
            grace_s=settings.sweep_grace_s,
            replication=replication,
            changes_maxlen=settings.events_maxlen,
        ),
        gate=Gate(client),
    )


def warm(d: Deps) -> Deps:
    """Build every client a step may need now (HTTP pool, provider adapters, S3) and connect
    to Redis, so that no step pays for it: the first task of a fresh worker is as fast as its
    thousandth. (redis-py loads each Lua script on its first use: one round trip.)"""
    for name in d.catalogue.providers:
        d.provider(name)
    _ = d.storage, d.limiter, d.stats
    d.redis.ping()
    return d
