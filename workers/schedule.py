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


def first_poll(config: ProviderConfig) -> float:
    return min(MAX_COUNTDOWN_S, config.first_poll_s)


def next_poll(
    config: ProviderConfig,
    polls_done: int,
    *,
    hint_s: float | None = None,
    remaining_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The countdown before poll number ``polls_done + 1``.

    ``hint_s`` is the provider's own advice (Retry-After, openai-poll-after-ms): honoured, but
    never beyond the cap. ``remaining_s`` (time to the job's deadline) keeps the last poll on it.
    """
    if hint_s is not None and hint_s > 0:
        delay = min(hint_s, MAX_COUNTDOWN_S)
    else:
        grown = config.min_poll_interval_s * BACKOFF_FACTOR ** max(0, polls_done - 1)
        delay = jittered(min(grown, config.max_poll_interval_s), rng)
    if remaining_s is not None:
        delay = min(delay, max(0.0, remaining_s))
    return delay


def retry_backoff(attempt: int, *, base_s: float = 1.0, cap_s: float = MAX_COUNTDOWN_S) -> float:
    """Exponential backoff with full jitter, for retrying a failed step."""
    return random.uniform(base_s / 2, min(cap_s, base_s * 2 ** max(0, attempt)))
