"""How long a provider asks to be left alone: ``retry-after-ms`` and ``Retry-After``.

Kept apart from ``workers.providers.http`` (which re-exports both functions) because it is pure
header parsing: no request, no error tree. The standard library's ``email.utils`` parses the
HTTP-date form, so no third-party parser is needed.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

import httpx


def retry_after_s(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After``; None when neither is usable."""
    millis = _non_negative_number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    return parse_retry_after(headers.get("retry-after"), now=now)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; a past date gives 0."""
    if value is None or not value.strip():
        return None
    seconds = _non_negative_number(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" zones parse as naive; HTTP dates are always GMT
        moment = moment.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (moment - current).total_seconds())


def _non_negative_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return max(0.0, number)
