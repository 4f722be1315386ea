"""Writes that must survive a Redis failover wait until replicas confirm them (``WAIT``).

Redis replicates asynchronously: a master that fails over can take its last writes with it,
although it acknowledged them. Two such writes would break a promise, so with
``VIDQUEUE_REDIS_WAIT_REPLICAS`` > 0 (the default with Sentinel) they wait:

- a job's creation, which the API acknowledges to the producer (lost, the job is lost);
- the mark that a submit is about to be sent (lost, the job reads as never sent, and a
  re-delivered submit would pay the provider twice).

``WAIT`` counts the replicas that hold everything this connection wrote, so the write and its
``WAIT`` go down one connection, in one pipeline. Replication is one ordered stream: a
confirmed write also confirms every write before it (e.g. the concurrency slot the job took on
dispatch). Whatever else a failover loses is re-done by the steps' own recovery
(docs/operations.md).

With Sentinel, a write waits for at most as many replicas as the Sentinels see alive (asked
once a second). A master with no live replica cannot be failed over (there is nothing to
promote), so its writes cannot be lost to a failover and need no confirmation; without this, a
master that lost its last replica would refuse every job. A master that was just replaced is
the case ``WAIT`` exists for: the Sentinels still list the promoted server (or, after the
switch, the old master) as a replica, so the count stays up, the old master's ``WAIT`` finds
no replica, and its writes are refused instead of silently lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from redis.sentinel import SentinelConnectionPool

from workers.domain.errors import NotReplicated

# How often a process asks the Sentinels how many replicas are alive.
SENTINEL_REFRESH_S: Final = 1.0


@dataclass
class Replication:
    """How many replicas confirm a durable write, and how long to wait for them."""

    replicas: int = 0
    timeout_ms: int = 1000
    _seen: tuple[float, int] = field(default=(0.0, 0), repr=False)

    def write(self, client: redis.Redis, queue: Callable[[Any], None]) -> list[Any]:
        """Run the commands ``queue`` puts in a pipeline, then wait for the replicas.

        Returns the commands' replies. Raises ``NotReplicated`` when too few replicas confirm
        them in time; the writes themselves were applied on the master.
        """
        wanted = self._wanted(client)
        pipe = client.pipeline(transaction=False)
        queue(pipe)
        if wanted:
            pipe.wait(wanted, self.timeout_ms)
        replies: list[Any] = pipe.execute()
        if wanted:
            acked = int(replies.pop())
            if acked < wanted:
                raise NotReplicated(wanted, acked, self.timeout_ms)
        return replies

    def _wanted(self, client: redis.Redis) -> int:
        """``replicas``, or fewer when the Sentinels see fewer alive (asked once a second)."""
        pool = client.connection_pool
        if not self.replicas or not isinstance(pool, SentinelConnectionPool):
            return self.replicas
        at, alive = self._seen
        now = time.monotonic()
        if now - at >= SENTINEL_REFRESH_S:
            try:
                alive = len(pool.sentinel_manager.discover_slaves(pool.service_name))
            except redis.RedisError:
                alive = self.replicas  # no Sentinel answers: assume the worst
            self._seen = (now, alive)
        return min(self.replicas, alive)
