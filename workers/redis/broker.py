"""kombu's Redis transport with one fix: a worker survives a Redis restart.

On a lost broker connection Celery (5.7) first ``collect()``s the connection, which drops the
transport's client, then closes it again. Every call that still needs that client then raises
``AttributeError``, which Celery takes for an unrecoverable error: the worker exits. Two such
calls happen to every vidqueue worker on each Redis restart:

- closing the channel restores its un-acked messages (a worker always holds some: scheduled
  polls);
- a step that was running when the connection went finishes and acknowledges its message on
  the old channel (vidqueue lets running steps finish: ``config.celery``).

Here both are skipped on a channel whose connection is gone. Nothing is lost: each message
stays in Redis's un-acked hash (written when it was delivered), Redis re-delivers it after the
visibility timeout, and its step then finds its job claimed or done and does nothing; the sweep
re-sends whatever is overdue long before that. Configured as ``broker_transport`` in
``config.celery``; the broker URL stays ``redis://``.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("vidqueue.broker")


def _orphaned(channel: Any) -> bool:
    """True when the channel's connection was closed or collected under it."""
    transport = channel.connection
    return transport is None or transport.client is None


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def ack(self, delivery_tag: str) -> None:
        if _orphaned(self.channel):
            log.warning("message %s came on a lost connection: left for redelivery", delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if _orphaned(self.channel):
            log.warning("message %s came on a lost connection: left for redelivery", delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS

    def close(self) -> None:
        if _orphaned(self) and self._qos is not None:
            self._qos.restore_at_shutdown = False
        super().close()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
