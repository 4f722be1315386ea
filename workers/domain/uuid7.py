"""What a job id tells by itself: vidqueue's ids are UUIDv7s (``producer.batch.new_job_id``),
whose first 48 bits are the creation time in Unix ms.

Why it matters: the archive (``workers.io.archive``) files a job under the day its id was made,
so a reader finds it from the id alone, and a reader can tell that an id too young to have
left Redis need not be looked for in S3. Ids of another shape (tests, old tools) are never
archived: they stay in Redis until their record expires.

Ids are made by the ``uuid-utils`` library; reading one back stays hand-written here, on
purpose: the shape check is vidqueue's own (exactly the 32 lowercase hex digits it issues, a
library parse would also take dashed, braced or upper-case forms and other versions), and the
time is one slice, the first 48 bits (RFC 9562 §5.7). ``tests/unit/test_lib_uuid7.py`` checks
that it reads what ``uuid_utils.UUID(...).timestamp`` reads.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Final

# 32 hex digits, the version nibble 7 (the 13th digit).
_UUID7: Final = re.compile(r"^[0-9a-f]{12}7[0-9a-f]{19}$")


def created_ms(job_id: str) -> int | None:
    """The creation time (Unix ms) a UUIDv7 job id carries; None for any other id."""
    if not _UUID7.match(job_id):
        return None
    return int(job_id[:12], 16)


def day_of(job_id: str) -> date | None:
    """The UTC day a UUIDv7 job id was made on; None for another id."""
    ms = created_ms(job_id)
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).date()
