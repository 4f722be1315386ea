"""The sweep's storage hygiene: abort the multipart uploads left behind by killed mirrors.

Runs at most once per ``VIDQUEUE_S3_HYGIENE_INTERVAL_S`` over all sweeps
(``workers.redis.pacing``), on the bucket and prefix vidqueue owns, and never fails the sweep:
S3 being down only postpones it to the next turn (``workers.io.hygiene``).
"""

from __future__ import annotations

import logging

from workers.deps import Deps
from workers.domain.errors import VidqueueError
from workers.io.hygiene import Cleaned, abort_stale_uploads
from workers.io.storage import s3_client
from workers.redis.pacing import hygiene_turn

log = logging.getLogger("vidqueue.sweep")


def clean_storage(d: Deps, *, force: bool = False) -> Cleaned | None:
    """One hygiene pass when it is this sweep's turn (``force``: now); None when skipped or
    S3 failed."""
    settings = d.settings
    if not force and not hygiene_turn(d.redis, settings.s3_hygiene_interval_s):
        return None
    try:
        # Short timeouts and one retry: a stalled S3 costs the sweep seconds, not minutes.
        client = s3_client(settings.s3_endpoint_url, connect_s=2, read_s=10, retries=1)
        return abort_stale_uploads(
            client, settings.s3_bucket, settings.s3_prefix, settings.s3_multipart_max_age_s
        )
    except VidqueueError as exc:
        log.warning("storage hygiene postponed: %s", exc.message)
    except Exception:
        log.exception("storage hygiene failed; the next turn tries again")
    return None
