"""kombu's Redis transport with two fixes: a worker survives a Redis restart, and Redis
refusing writes.

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
re-sends whatever is overdue long before that.

Redis refusing writes (``maxmemory`` reached, a read-only replica after a failover: the errors
of ``retry.REJECTED_WRITES``) is a ``ResponseError`` to kombu, which is no connection error, so
Celery took it for an unrecoverable one and the worker exited; nothing moved again until a
person restarted it. Here:

- they count as connection errors, so whatever still escapes makes the consumer reconnect with
  backoff (Celery's ``broker_connection_retry``) instead of exiting;
- an ack refused under OOM (kombu removes the message in MULTI, which Redis then refuses as a
  whole) is done again as two plain deletes, which Redis allows; if that fails too (READONLY),
  the message is forgotten here and stays in the un-acked hash. Either way the worker's own
  bookkeeping is done, or after ``prefetch`` refused acks it would never consume again;
- a message taken from its queue whose un-acked copy cannot be written is run anyway rather
  than dropped (its step's job is in ``vq:due``: if this worker dies, a due poller re-sends it);
- restoring un-acked messages on a reconnect leaves those it cannot write where they are.

No message is lost: what stays in the un-acked hash is re-delivered after the visibility
timeout, and its step finds its job done (or a due poller re-sent it long before). Configured
as ``broker_transport`` in ``config.celery``; the broker URL stays ``redis://``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from workers.domain.retry import REJECTED_WRITES, rejected_write, typed
from workers.redis.stats import note_rejected

log = logging.getLogger("vidqueue.broker")


def _orphaned(channel: Any) -> bool:
    """True when the channel's connection was closed or collected under it."""
    transport = channel.connection
    return transport is None or transport.client is None


# A refused write is logged at most this often per process (an outage refuses thousands).
_LOG_EVERY_S = 10.0
# Reconnecting after a refusal waits this long, doubling up to the maximum: connecting works at
# once (PING is no write), so without a pause a replica's READONLY BRPOP reconnects in a loop.
_PAUSE_FIRST_S = 0.5
_PAUSE_MAX_S = 5.0
_last_logged = 0.0
_refusals = 0


def _refused(what: str, exc: BaseException) -> None:
    """Count a refused write, log it once per ``_LOG_EVERY_S`` (not once per message), and
    make the next reconnect wait (``_pause``)."""
    global _last_logged, _refusals
    note_rejected(exc)
    _refusals += 1
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_S:
        _last_logged = now
        log.warning("Redis refused a write (%s): %s; %s", rejected_write(exc), exc, what)


def _accepted() -> None:
    """Redis took a write again: the next reconnect needs no pause."""
    global _refusals
    _refusals = 0


def _pause() -> float:
    """How long a reconnect waits after ``_refusals`` refusals in a row."""
    if not _refusals:
        return 0.0
    return min(_PAUSE_MAX_S, _PAUSE_FIRST_S * 2.0 ** min(_refusals - 1, 8))


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)
            _accepted()
        except REJECTED_WRITES as exc:
            _refused("a message taken from its queue runs without an un-acked copy", exc)
            virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if _orphaned(self.channel):
            log.warning("message %s came on a lost connection: left for redelivery", delivery_tag)
            return
        try:
            super().ack(delivery_tag)
        except REJECTED_WRITES as exc:
            self._forget(delivery_tag, exc)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if _orphaned(self.channel):
            log.warning("message %s came on a lost connection: left for redelivery", delivery_tag)
            return
        try:
            super().reject(delivery_tag, requeue=requeue)
        except REJECTED_WRITES as exc:
            self._forget(delivery_tag, exc)

    def _forget(self, delivery_tag: str, exc: BaseException) -> None:
        """An ack Redis refused: remove the message with plain deletes (allowed under OOM,
        where MULTI is not), else leave it un-acked in Redis; forget it here in any case."""
        try:
            with self.channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                pipe.zrem(self.unacked_index_key, delivery_tag)
                pipe.hdel(self.unacked_key, delivery_tag)
                pipe.execute()
        except REJECTED_WRITES:
            _refused("an acked message stays un-acked in Redis, re-delivered later", exc)
        virtual.QoS.ack(self, delivery_tag)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().restore_visible(*args, **kwargs)
        except REJECTED_WRITES as exc:
            _refused("messages past the visibility timeout are restored later", exc)

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        try:
            super().restore_by_tag(tag, client, leftmost)
        except REJECTED_WRITES as exc:
            _refused("an un-acked message stays where it is, re-delivered later", exc)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS

    def _brpop_read(self, **options: Any) -> Any:
        """A blocked BRPOP that Redis ends with an untyped refusal (``UNBLOCKED``: the server
        became a replica) raises it typed, as the connection error it now is."""
        try:
            return super()._brpop_read(**options)
        except redis.ResponseError as exc:
            refusal = typed(exc)
            if rejected_write(refusal) is not None:
                _refused("the consumer reconnects after a pause", refusal)
            if refusal is exc:
                raise
            raise refusal from exc

    def close(self) -> None:
        if _orphaned(self) and self._qos is not None:
            self._qos.restore_at_shutdown = False
        super().close()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """Redis refusing writes is a connection error: the consumer reconnects with backoff."""

    Channel = Channel
    connection_errors = (*kombu_redis.Transport.connection_errors, *REJECTED_WRITES)

    def establish_connection(self) -> Any:
        """Connect, after a pause while Redis refuses writes (Celery's own retry interval only
        applies when connecting fails, which a refusing Redis never does)."""
        pause = _pause()
        if pause:
            time.sleep(pause)
        return super().establish_connection()


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """The channel above, on the master that Redis Sentinel names (kombu's Sentinel channel
    finds it; ours keeps the fixes)."""

    QoS = QoS


class SentinelTransport(Transport):
    """``Transport`` through Redis Sentinel: the broker URL lists the Sentinels
    (``sentinel://h1:26379;sentinel://h2:26379/0``), the transport options name the master."""

    Channel = SentinelChannel
    default_port = kombu_redis.SentinelTransport.default_port
