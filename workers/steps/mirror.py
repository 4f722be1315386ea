"""Mirroring: copy the result (video and cover) into S3 before the provider's links expire.

Mirroring starts as soon as the provider reports success, on its own queue. A download that
finds its link expired asks the provider once for a fresh link before giving up with
``result_url_expired``.

Once the files are in S3 the job succeeds with a lean record: the provider's URLs are dropped
(``workers.redis.store.SPENT_WHEN_SUCCEEDED``), and the stored result keeps no presigned URL:
every read presigns afresh, and so does the webhook (``notify``). The job is then registered
in the reuse index (later specs with ``reuse_within_s`` may take its result), and the bytes
and objects mirrored are counted for ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Final

from workers.deps import Deps
from workers.domain import retry
from workers.domain.change import Change
from workers.domain.errors import MIRROR_FAILED, PermanentError, ResultUrlExpired, RetryableError
from workers.domain.jobs import ProviderStatus, State, parse_iso
from workers.domain.lean import result_for_storage
from workers.domain.messages import Step
from workers.domain.row import JobRow
from workers.io.stream import heartbeats, mirror_url
from workers.redis.reuse import ReuseIndex
from workers.steps.endings import fail, finish, provider_task

log = logging.getLogger("vidqueue.mirror")

# A mirror renews its claim on a timer (every HEARTBEAT_S, whether data flows or not) for as
# long as it runs, so the claim can be short: a mirror killed mid-copy is re-sent by a due
# poller about MIRROR_LEASE_S + the grace later, long before URLs expire.
MIRROR_LEASE_S: Final = 30.0
HEARTBEAT_S: Final = 5.0


def mirror(job_id: str, d: Deps) -> list[Step]:
    claim = d.store.claim(job_id, (State.MIRRORING,), lease_s=MIRROR_LEASE_S)
    row = claim.row
    if row is None:
        return []
    try:
        # The beats stop before any outcome below is written (a late one would move the retry).
        with heartbeats(lambda: _still_mirroring(job_id, d), HEARTBEAT_S):
            result = _copy_or_refresh(row, d)
    except RetryableError as exc:
        return _mirror_later(row, exc, d)
    except (ResultUrlExpired, PermanentError) as exc:
        return fail(row, (State.MIRRORING,), exc, d)
    change = Change(result=result_for_storage(result))
    steps = finish(row, (State.MIRRORING,), State.SUCCEEDED, None, d, change=change)
    _count(row, result, d)
    if row.provider_finished_at:
        since = time.time() - parse_iso(row.provider_finished_at).timestamp()
        d.stats.observe("mirror", since, provider=row.provider, model=row.model)
    return steps


def _count(row: JobRow, result: dict[str, Any], d: Deps) -> None:
    """Count what was mirrored, and make the result findable for reuse. Neither may fail the
    step: the job has succeeded already."""
    size = sum(int(item.get("size", 0)) for item in result.values())
    d.stats.count_mirrored(row.provider, size, len(result))
    try:
        ReuseIndex(d.redis).register(row.id, row.spec)
    except Exception:
        log.warning("job %s: not registered for reuse", row.id, exc_info=True)


def _copy_or_refresh(row: JobRow, d: Deps) -> dict[str, Any]:
    """Copy the result; on an expired link, once more from a fresh one."""
    try:
        return _copy(row, d)
    except ResultUrlExpired:
        return _copy(_refresh_urls(row, d), d)


def _copy(row: JobRow, d: Deps) -> dict[str, Any]:
    provider = d.provider(row.provider)
    key = d.key(row.provider, row.slot_key_id)
    d.storage.ensure_bucket()
    result: dict[str, Any] = {}
    for what, url in (("video", row.video_url), ("cover", row.cover_url)):
        if not url:
            continue
        headers = provider.download_headers(url, key)
        if headers:  # the provider's own API serves the file: it counts against its rate
            d.limiter.take(d.config(row.provider), key.id)
            d.stats.count(row.provider, key.id, "download")
        stored = mirror_url(
            d.http,
            d.storage,
            url=url,
            headers=headers,
            job_id=row.id,
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


def _refresh_urls(row: JobRow, d: Deps) -> JobRow:
    """Ask the provider again for the result (some hand out a fresh link on every query): the
    row with the fresh links, which are stored too."""
    d.limiter.take(d.config(row.provider), row.slot_key_id)
    answer = d.provider(row.provider).poll(provider_task(row), d.key(row.provider, row.slot_key_id))
    if answer.status != ProviderStatus.SUCCEEDED or not answer.video_url:
        raise ResultUrlExpired("the provider has no fresh link for the result")
    if answer.video_url == row.video_url:
        raise ResultUrlExpired("the provider hands out the same, expired link")
    fresh = Change(video_url=answer.video_url, cover_url=answer.cover_url)
    d.store.transition(row.id, (State.MIRRORING,), None, change=fresh, event="fresh result URL")
    return replace(row, video_url=answer.video_url, cover_url=answer.cover_url or None)


def _mirror_later(row: JobRow, exc: RetryableError, d: Deps) -> list[Step]:
    attempts = row.mirror_attempts + 1
    if retry.MIRROR.exhausted(attempts):
        return fail(row, (State.MIRRORING,), exc, d)
    countdown = retry.MIRROR.delay(attempts, exc.retry_after_s)
    moved = d.store.transition(
        row.id,
        (State.MIRRORING,),
        None,
        step_s=countdown,
        incr="mirror_attempts",
        event=f"mirror retry in {countdown:.1f}s: {exc.message}",
    )
    return [Step("mirror", row.id, countdown)] if moved else []
