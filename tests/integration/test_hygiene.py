"""Storage hygiene on the live stack's SeaweedFS: the sweep's pass aborts multipart uploads
abandoned under vidqueue's prefix, and keeps fresh ones and anything outside the prefix."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from tests.support.live import LiveStack
from workers.deps import build
from workers.io.hygiene import abort_stale_uploads
from workers.redis.pacing import hygiene_turn
from workers.steps.hygiene import clean_storage


def _open_upload(client: Any, bucket: str, key: str) -> str:
    """A multipart upload with one part stored, never completed (a mirror killed mid-copy)."""
    upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return upload_id


def _open_ids(client: Any, bucket: str, prefix: str) -> set[str]:
    page = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return {upload["UploadId"] for upload in page.get("Uploads", [])}


def test_stale_uploads_under_the_prefix_are_aborted_and_the_rest_kept(live: LiveStack) -> None:
    storage = live.storage()
    storage.ensure_bucket()
    client, bucket, prefix = storage.client, storage.bucket, storage.prefix
    run = uuid.uuid4().hex
    # Given an abandoned upload under vidqueue's prefix, and one outside it
    mine = _open_upload(client, bucket, f"{prefix}{run}/video.mp4")
    outside = _open_upload(client, bucket, f"elsewhere-{run}/video.mp4")
    # When a pass looks for uploads older than an hour, then the fresh one is kept
    kept = abort_stale_uploads(client, bucket, f"{prefix}{run}", 3600)
    assert kept.aborted == 0 and mine in _open_ids(client, bucket, f"{prefix}{run}")
    # When the sweep's pass runs with a max age of 0 (every upload is stale by then)
    settings = live.settings.model_copy(update={"s3_multipart_max_age_s": 0})
    cleaned = clean_storage(build(settings), force=True)
    # Then the upload under the prefix is gone, and the one outside it is still open
    assert cleaned is not None and cleaned.aborted >= 1
    assert mine not in _open_ids(client, bucket, f"{prefix}{run}")
    assert outside in _open_ids(client, bucket, f"elsewhere-{run}")
    client.abort_multipart_upload(Bucket=bucket, Key=f"elsewhere-{run}/video.mp4", UploadId=outside)


def test_a_pass_is_bounded(live: LiveStack) -> None:
    storage = live.storage()
    storage.ensure_bucket()
    client, bucket = storage.client, storage.bucket
    prefix = f"{storage.prefix}bounded-{uuid.uuid4().hex}/"
    opened = {_open_upload(client, bucket, f"{prefix}{n}/video.mp4") for n in range(3)}
    first = abort_stale_uploads(client, bucket, prefix, 0, max_aborted=2)
    assert first.aborted == 2 and len(_open_ids(client, bucket, prefix)) == 1
    second = abort_stale_uploads(client, bucket, prefix, 0, max_aborted=2)
    assert second.aborted == 1 and not _open_ids(client, bucket, prefix) & opened


def test_the_sweep_cleans_at_most_once_per_interval(redis_db: redis.Redis) -> None:
    assert hygiene_turn(redis_db, 300)
    assert not hygiene_turn(redis_db, 300)
    assert 0 < (redis_db.pttl("vq:hygiene") or 0) <= 300_000
