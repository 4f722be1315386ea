"""Turns for the sweep's slow chores: at most one pass per interval, whichever beat runs it.

The sweep runs every few seconds, but some of its chores (listing S3 for abandoned uploads)
are worth doing only every few minutes. A chore takes its turn with ``SET NX EX`` on its key:
the first sweep after the interval gets it, every other one skips it in one round trip.
"""

from __future__ import annotations

import redis

from workers.redis import keys


def hygiene_turn(client: redis.Redis, interval_s: float) -> bool:
    """Whether this sweep cleans storage now (then no other does for ``interval_s``)."""
    return bool(client.set(keys.hygiene(), "1", nx=True, px=max(1, int(interval_s * 1000))))
