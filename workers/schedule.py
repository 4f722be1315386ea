"""When to poll next: the first poll near the expected finish, then jittered backoff to a cap.

Every countdown stays at or below ``MAX_COUNTDOWN_S``, far below the broker's visibility
timeout (Redis re-delivers un-acked ETA messages after it, DESIGN.md §3).
"""

from __future__ import annotations

import random
from typing import Final

from config.providers import MAX_COUNTDOWN_S, ProviderConfig

BACKOFF_FACTOR: Final = 1.5
JITTER: Final = 0.15


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
        spread = (rng or random).uniform(1 - 2 * JITTER, 1.0)
        delay = min(MAX_COUNTDOWN_S, config.max_poll_interval_s * spread)
    else:
        grown = config.min_poll_interval_s * BACKOFF_FACTOR ** max(0, polls_done - 1)
        delay = jittered(min(grown, config.max_poll_interval_s), rng)
    if remaining_s is not None:
        delay = min(delay, max(0.0, remaining_s))
    return delay


def retry_backoff(attempt: int, *, base_s: float = 1.0, cap_s: float = MAX_COUNTDOWN_S) -> float:
    """Exponential backoff with full jitter, for retrying a failed step."""
    return random.uniform(base_s / 2, min(cap_s, base_s * 2 ** max(0, attempt)))
