"""Mirroring: copy the result (video and cover) into S3 before the provider's links expire.

Mirroring starts as soon as the provider reports success, on its own queue. A download that
finds its link expired asks the provider once for a fresh link before giving up with
``result_url_expired``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from workers.deps import Deps
from workers.domain import schedule
from workers.domain.errors import (
    MIRROR_FAILED,
    RESULT_URL_EXPIRED,
    PermanentError,
    ResultUrlExpired,
    RetryableError,
)
from workers.domain.jobs import ProviderStatus, State, parse_iso
from workers.domain.messages import Step
from workers.io.stream import heartbeats, mirror_url
from workers.providers.base import ProviderTask
from workers.steps.endings import fail, finish

log = logging.getLogger("vidqueue.mirror")

# A mirror renews its claim on a timer (every HEARTBEAT_S, whether data flows or not) for as
# long as it runs, so the claim can be short: a mirror killed mid-copy is re-sent by a due
# poller about MIRROR_LEASE_S + the grace later, long before URLs expire.
MIRROR_LEASE_S: Final = 30.0
HEARTBEAT_S: Final = 5.0
MAX_MIRROR_ATTEMPTS: Final = 20


def mirror(job_id: str, d: Deps) -> list[Step]:
    claim = d.store.claim(job_id, (State.MIRRORING,), lease_s=MIRROR_LEASE_S)
    if not claim.ok:
        return []
    fields = dict(claim.fields)
    try:
        # The beats stop before any outcome below is written (a late one would move the retry).
        with heartbeats(lambda: _still_mirroring(job_id, d), HEARTBEAT_S):
            result = _copy_or_refresh(job_id, fields, d)
    except ResultUrlExpired as exc:
        exc.code = RESULT_URL_EXPIRED
        return fail(job_id, (State.MIRRORING,), exc, fields, d)
    except RetryableError as exc:
        return _mirror_later(job_id, fields, exc, d)
    except PermanentError as exc:
        return fail(job_id, (State.MIRRORING,), exc, fields, d)
    extra = {"result": json.dumps(result)}
    steps = finish(job_id, (State.MIRRORING,), State.SUCCEEDED, None, fields, d, extra=extra)
    if fields.get("provider_finished_at"):
        since = time.time() - parse_iso(fields["provider_finished_at"]).timestamp()
        d.stats.observe("mirror", since)
    return steps


def _copy_or_refresh(job_id: str, fields: dict[str, str], d: Deps) -> dict[str, Any]:
    """Copy the result; on an expired link, once more from a fresh one (``fields`` updated)."""
    try:
        return _copy(job_id, fields, d)
    except ResultUrlExpired:
        fields.update(_refresh_urls(job_id, fields, d))
        return _copy(job_id, fields, d)


def _copy(job_id: str, fields: dict[str, str], d: Deps) -> dict[str, Any]:
    provider = d.provider(fields["provider"])
    key = d.key(fields["provider"], fields["key_id"])
    d.storage.ensure_bucket()
    result: dict[str, Any] = {}
    for what in ("video", "cover"):
        url = fields.get(f"{what}_url")
        if not url:
            continue
        headers = provider.download_headers(url, key)
        if headers:  # the provider's own API serves the file: it counts against its rate
            d.limiter.take(d.config(fields["provider"]), key.id)
            d.stats.count(fields["provider"], key.id, "download")
        stored = mirror_url(
            d.http,
            d.storage,
            url=url,
            headers=headers,
            job_id=job_id,
            what=what,
        )
        result[what] = {**stored.as_dict(), "url": d.storage.presign(stored.key)}
    if "video" not in result:
        raise PermanentError(
            "the provider reported success without a video URL", code=MIRROR_FAILED
        )
    return result


def _still_mirroring(job_id: str, d: Deps) -> None:
    d.store.transition(job_id, (State.MIRRORING,), None, step_s=MIRROR_LEASE_S)


def _refresh_urls(job_id: str, fields: dict[str, str], d: Deps) -> dict[str, str]:
    """Ask the provider again for the result: some hand out a fresh link on every query."""
    provider = d.provider(fields["provider"])
    task = ProviderTask(fields["provider_task_id"], json.loads(fields.get("task_extra") or "{}"))
    d.limiter.take(d.config(fields["provider"]), fields["key_id"])
    answer = provider.poll(task, d.key(fields["provider"], fields["key_id"]))
    fresh = {"video_url": answer.video_url or "", "cover_url": answer.cover_url or ""}
    if answer.status != ProviderStatus.SUCCEEDED or not answer.video_url:
        raise ResultUrlExpired("the provider has no fresh link for the result")
    if fresh["video_url"] == fields.get("video_url"):
        raise ResultUrlExpired("the provider hands out the same, expired link")
    d.store.transition(job_id, (State.MIRRORING,), None, fields=fresh, event="fresh result URL")
    return {**fields, **fresh}


def _mirror_later(job_id: str, fields: dict[str, str], exc: RetryableError, d: Deps) -> list[Step]:
    attempts = int(fields.get("mirror_attempts", "0")) + 1
    if attempts >= MAX_MIRROR_ATTEMPTS:
        return fail(job_id, (State.MIRRORING,), exc, fields, d)
    countdown = exc.retry_after_s or schedule.retry_backoff(attempts)
    moved = d.store.transition(
        job_id,
        (State.MIRRORING,),
        None,
        step_s=countdown,
        incr="mirror_attempts",
        event=f"mirror retry in {countdown:.1f}s: {exc.message}",
    )
    return [Step("mirror", job_id, countdown)] if moved else []
