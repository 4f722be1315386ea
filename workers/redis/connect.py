"""The one place a redis-py client for vidqueue's Redis is made: one server, or Sentinel's master
(``connect``; ``connect_async`` makes the asyncio twin, for the API's blocking stream reads).

With Sentinel (``config.redis_url``) the client is redis-py's ``Sentinel.master_for``: each new
connection asks the Sentinels where the master is, and a connection that finds its server
demoted to a replica (``READONLY`` after a failover) is dropped as a connection error. vidqueue
already backs off and retries on connection errors everywhere (``workers.domain.retry``), so
after a failover every process finds the new master by itself, without a restart. Lua scripts
are re-loaded on the new master by redis-py on their first ``NOSCRIPT``.
"""

from __future__ import annotations

from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.sentinel
from redis.sentinel import Sentinel

from config.settings import Settings

SOCKET_TIMEOUT_S: Final = 10.0
HEALTH_CHECK_INTERVAL_S: Final = 30


def connect(settings: Settings, **options: Any) -> redis.Redis:
    """A client of the Redis ``settings`` name; ``options`` override the connection's."""
    options = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        **options,
    }
    target = settings.sentinel
    if target is None:
        return redis.Redis.from_url(settings.redis_url, **options)
    # redis-py's Sentinel module is untyped.
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs())  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return client


def connect_async(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client (``redis.asyncio``) of the same Redis as ``connect``, Sentinel's master
    included (``redis.asyncio.sentinel``): for reads that block (``XREAD BLOCK`` of the live
    events) without holding a thread of the API's pool. ``options`` override the
    connection's (a blocking read needs a ``socket_timeout`` longer than its block)."""
    options = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        **options,
    }
    target = settings.sentinel
    if target is None:
        client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(settings.redis_url, **options)
        return client
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs()
    )
    master: redis.asyncio.Redis = sentinel.master_for(
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return master
