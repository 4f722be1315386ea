"""When to poll next: the first poll near the expected finish, then jittered backoff to a cap;
and how urgent a mirror is.

Every countdown stays at or below ``MAX_COUNTDOWN_S``. A countdown is a due time in Redis
(``workers.steps.due``), never a message parked in a worker. How failed steps are retried is
``workers.domain.retry``'s table.
"""

from __future__ import annotations

import random
import time
from typing import Final

from config.providers import MAX_COUNTDOWN_S, ProviderConfig

BACKOFF_FACTOR: Final = 1.5
JITTER: Final = 0.15
# Steady polls are spread over [90 %, 100 %] of the lag target: no herd, and no lag beyond it.
STEADY_JITTER: Final = 0.1


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return min(MAX_COUNTDOWN_S, max(0.0, seconds * spread))


# The first poll is learned once a model has this many recent generation times...
MIN_SAMPLES: Final = 8
# ...and lands at this low percentile of them: few jobs finish sooner, so the first poll is
# rarely wasted, and a finish after it is seen within one poll interval.
FIRST_POLL_PERCENTILE: Final = 0.05


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered))))]


def first_poll(config: ProviderConfig, durations: list[float] | None = None) -> float:
    """Near the expected finish: a low percentile of the model's recent generation times,
    never before the configured floor (``first_poll_s``)."""
    floor = config.first_poll_s
    if durations and len(durations) >= MIN_SAMPLES:
        floor = max(floor, percentile(durations, FIRST_POLL_PERCENTILE))
    return min(MAX_COUNTDOWN_S, floor)


def safety_poll(config: ProviderConfig, rng: random.Random | None = None) -> float:
    """The next poll of a job whose provider calls back (docs/callbacks.md): a callback brings
    it forward, so this one only bounds what a lost callback costs. Spread over [90 %, 100 %]
    of ``callback_safety_poll_s``, like steady polls."""
    spread = (rng or random).uniform(1 - STEADY_JITTER, 1.0)
    return min(MAX_COUNTDOWN_S, config.callback_safety_poll_s * spread)


def next_poll(
    config: ProviderConfig,
    polls_done: int,
    *,
    hint_s: float | None = None,
    remaining_s: float | None = None,
    rng: random.Random | None = None,
    steady: bool = False,
) -> float:
    """The countdown before poll number ``polls_done + 1``.

    ``steady``: the first poll was learned, so poll every ``max_poll_interval_s`` after it;
    otherwise back off from ``min_poll_interval_s`` to it (nothing known about this model yet).

    ``hint_s`` is the provider's own advice (Retry-After, openai-poll-after-ms): honoured, but
    never beyond the cap. ``remaining_s`` (time to the job's deadline) keeps the last poll on it.
    """
    if hint_s is not None and hint_s > 0:
        delay = min(hint_s, MAX_COUNTDOWN_S)
    elif steady:
        # The first poll was learned (near the earliest finishes): from there, one poll per
        # lag target is the fewest polls that keep the detection lag within it. The jitter
        # only shortens the interval, so the lag never exceeds the target.
        spread = (rng or random).uniform(1 - STEADY_JITTER, 1.0)
        delay = min(MAX_COUNTDOWN_S, config.max_poll_interval_s * spread)
    else:
        grown = config.min_poll_interval_s * BACKOFF_FACTOR ** max(0, polls_done - 1)
        delay = jittered(min(grown, config.max_poll_interval_s), rng)
    if remaining_s is not None:
        delay = min(delay, max(0.0, remaining_s))
    return delay


# A mirror's broker priority by how long its result URL has left. kombu's Redis transport keeps
# one list per priority step (0, 3, 6, 9) and every consumer pops the lower numbers first, so of
# the mirrors waiting, those whose URLs expire soonest run first (within a step: FIFO, which for
# one provider is expiry order too). Messages without a priority count as 0.
MIRROR_PRIORITIES: Final = ((3600.0, 0), (6 * 3600.0, 3), (24 * 3600.0, 6))
LEAST_URGENT: Final = 9


def mirror_priority(
    url_ttl_s: float, finished_at: float | None = None, *, now: float | None = None
) -> int:
    """The mirror's priority: its result URLs live ``url_ttl_s`` from ``finished_at`` (unix s,
    when the provider was seen to finish; None: just now)."""
    left = url_ttl_s
    if finished_at is not None:
        left -= (time.time() if now is None else now) - finished_at
    return next((p for within, p in MIRROR_PRIORITIES if left < within), LEAST_URGENT)
