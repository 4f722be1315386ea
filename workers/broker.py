"""kombu's Redis transport with one fix: a worker survives a Redis restart.

On a lost broker connection Celery (5.7) first ``collect()``s the connection, which drops the
transport's client, then closes the connection again. That second close reaches the channel's
"restore un-acked messages" step, which needs the dropped client, and raises ``AttributeError``;
Celery takes it for an unrecoverable error and the worker exits. A vidqueue worker always holds
un-acked messages (scheduled polls), so every Redis restart stopped every worker.

Here a channel whose transport was already collected skips that restore. Nothing is lost: the
messages stay in Redis's un-acked hash (persisted when they were delivered), Redis redelivers
them after the visibility timeout, and the sweep re-sends the overdue steps long before that.
Configured as ``broker_transport`` in ``config.celery``; the broker URL stays ``redis://``.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def close(self) -> None:
        transport: Any = self.connection
        if transport is not None and transport.client is None and self._qos is not None:
            self._qos.restore_at_shutdown = False
        super().close()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
