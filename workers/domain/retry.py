"""Every retry policy of the pipeline, in one table: how often a failed step is tried again, and
how far apart.

- ``REDIS_HICCUP``: Celery's own retries (``autoretry_for``) when Redis is unreachable or refuses
  writes (out of memory, a read-only replica, loading its data: ``REJECTED_WRITES``) — the only
  retries that are countdown messages; few, short, and only while Redis is in trouble.
- ``SUBMIT`` and ``MIRROR``: a step whose provider or media host failed in a retryable way is
  scheduled again (a due step in Redis, never a parked message) with full-jitter backoff.
- ``WEBHOOK``: the producer's webhook, quick at first (a receiver restarting), then hours apart,
  within a day of the job's end.

The numbers are what vidqueue has always used; changing one changes behaviour that
docs/design.md §7 and docs/scheduling.md describe.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Final

import redis

from workers.domain.jobs import parse_iso

# A failed step (a submit, a mirror) is tried again within this long, whatever its own backoff
# says: a longer wait would only leave a paid-for slot idle. A poll honours a provider's
# Retry-After up to this too.
RETRY_CAP_S: Final = 60.0


def backoff(attempt: int, *, base_s: float = 1.0, cap_s: float = RETRY_CAP_S) -> float:
    """Exponential backoff with full jitter: the wait before retry number ``attempt``."""
    return random.uniform(base_s / 2, min(cap_s, base_s * 2 ** max(0, attempt)))


@dataclass(frozen=True)
class CeleryRetry:
    """Celery's ``autoretry_for`` options: ``errors`` retried with ``retry_backoff`` (a countdown
    of factor × 2ⁿ, jittered, at most ``backoff_max_s``), ``max_retries`` times."""

    errors: tuple[type[Exception], ...]
    backoff_factor_s: int
    backoff_max_s: int
    max_retries: int

    def options(self) -> dict[str, Any]:
        """The options as ``app.task(**options)`` takes them."""
        return {
            "autoretry_for": self.errors,
            "retry_backoff": self.backoff_factor_s,
            "retry_backoff_max": self.backoff_max_s,
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True)
class StepRetry:
    """A step retried after a retryable failure: the attempt that reaches ``max_attempts`` ends
    the job instead. The wait is the failure's own Retry-After when it has one, else
    ``backoff``; ``hint_cap_s`` caps it (None: a Retry-After is taken as it is)."""

    max_attempts: int
    hint_cap_s: float | None = RETRY_CAP_S

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        wait = retry_after_s or backoff(attempt)
        return wait if self.hint_cap_s is None else min(wait, self.hint_cap_s)


@dataclass(frozen=True)
class WebhookRetry:
    """The webhook's schedule: the wait after failed attempt n is ``backoff_s[n - 1]`` ± the
    jitter, within ``window_s`` of the job's end; after the last one the webhook is abandoned."""

    backoff_s: tuple[int, ...]
    window_s: float
    jitter: float

    @property
    def max_attempts(self) -> int:
        return len(self.backoff_s) + 1

    def delay(self, attempts: int, *, completed_at: str, now: float | None = None) -> float | None:
        """Seconds until the next attempt after ``attempts`` failed ones, or None when the
        schedule or the window (from the job's end, ``completed_at``) is used up."""
        if attempts >= self.max_attempts:
            return None
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)
        wait = self.backoff_s[attempts - 1] * spread
        left = parse_iso(completed_at).timestamp() + self.window_s - (now or time.time())
        if left < 1:
            return None
        return min(wait, left)


# -- Redis refusing writes -------------------------------------------------------------------

# Redis answers these while it cannot take writes: ``maxmemory`` reached under ``noeviction``
# (OOM), a replica after a failover (READONLY), or a restart still loading its data (LOADING).
# Each passes once memory is freed, a primary is back or the load ends, so every process waits
# them out instead of exiting (docs/design.md §7).
REJECTED_WRITES: Final[tuple[type[redis.RedisError], ...]] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
)
_REASONS: Final = (
    (redis.exceptions.OutOfMemoryError, "OOM", "oom"),
    (redis.exceptions.ReadOnlyError, "READONLY", "readonly"),
    (redis.exceptions.BusyLoadingError, "LOADING", "loading"),
    # A primary turned replica first unblocks every blocked command (a worker's BRPOP) with
    # this, then refuses writes with READONLY: the same outage.
    (redis.exceptions.ReadOnlyError, "UNBLOCKED", "readonly"),
)


def rejected_write(exc: BaseException) -> str | None:
    """``"oom"``, ``"readonly"`` or ``"loading"`` when ``exc`` is Redis refusing a write, else
    None. redis-py types these by the reply's prefix; a reply it did not type (a plain
    ``ResponseError``: one relayed from a Lua script, ``UNBLOCKED``) is told by the prefix."""
    for kind, prefix, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
        if isinstance(exc, redis.ResponseError) and str(exc).lstrip().startswith(prefix):
            return reason
    return None


def typed(exc: BaseException) -> BaseException:
    """``exc`` as its typed class when it is an untyped refusal (a plain ``ResponseError``
    saying "OOM ..."), so that ``except``/``autoretry_for`` clauses, which match by class, see
    it; any other error as it is."""
    if type(exc) is not redis.ResponseError:
        return exc
    reason = rejected_write(exc)
    for kind, _, name in _REASONS:
        if name == reason:
            return kind(*exc.args)
    return exc


# -- the table ---------------------------------------------------------------------------------

REDIS_HICCUP: Final = CeleryRetry(
    errors=(redis.ConnectionError, redis.TimeoutError, *REJECTED_WRITES),
    backoff_factor_s=2,
    backoff_max_s=30,
    max_retries=8,
)
# Waiting for a request token (``Throttled``) is no failed attempt and does not count.
SUBMIT: Final = StepRetry(max_attempts=12)
# A mirror takes a Retry-After as it is, uncapped (as it always has; only a provider asked for a
# fresh link may send one: media hosts never do).
MIRROR: Final = StepRetry(max_attempts=20, hint_cap_s=None)
# Like every wait, each webhook retry is the job's next step in Redis, which a due poller
# publishes when due (workers.steps.due), however long it is.
WEBHOOK: Final = WebhookRetry(
    backoff_s=(1, 5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800),
    window_s=24 * 3600,
    jitter=0.1,
)
