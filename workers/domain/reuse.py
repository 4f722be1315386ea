"""What makes two jobs "the same generation", for the opt-in reuse of a finished result.

A spec with ``reuse_within_s`` asks: if a job of the same generation succeeded (and was
mirrored) within that many seconds, give me its result instead of paying for a new one. Never
the default: a generation is not deterministic, so a producer must ask for it.

The same generation means the same provider, model and canonical generation fields (prompt,
images, duration, size, fps, quality, audio, seed, negative prompt, options; key order and
unset fields do not count). What only concerns the job's handling does not: labels, priority,
callback URL, idempotency key and ``reuse_within_s`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Final

from workers.domain.jobs import JobSpec

# Not generation fields: two specs differing only in these are the same generation.
HANDLING_FIELDS: Final = frozenset(
    {"labels", "priority", "callback_url", "idempotency_key", "reuse_within_s"}
)
# The longest window a spec may ask for (a day: the reuse index keeps a day of successes).
REUSE_MAX_S: Final = 24 * 3600


def generation_digest(spec: JobSpec) -> str:
    """A short, fixed-length digest of the spec's generation (22 URL-safe characters, 128 bits
    of sha256): the key of the reuse index."""
    canonical = spec.model_dump(mode="json", exclude_none=True, exclude=set(HANDLING_FIELDS))
    if not canonical.get("options"):
        canonical.pop("options", None)
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
