"""Storage hygiene: abort the multipart uploads vidqueue started and never finished.

A mirror aborts its upload when a copy fails (``workers.io.storage``), but a worker killed
mid-copy cannot: its upload stays open, and S3 keeps (and bills) its parts until someone aborts
it. No object ever shows them. The sweep calls ``abort_stale_uploads`` at most once every few
minutes (``VIDQUEUE_S3_HYGIENE_INTERVAL_S``), and it looks only at the bucket and prefix
vidqueue owns (``VIDQUEUE_S3_BUCKET``, ``VIDQUEUE_S3_PREFIX``), and aborts only uploads
started longer ago than ``VIDQUEUE_S3_MULTIPART_MAX_AGE_S``: a mirror's copy takes minutes,
so a day-old upload is surely abandoned. Each pass lists and aborts a bounded number, so a
bucket with a huge backlog is cleaned over several passes, never in one long sweep.

Where the bucket allows it, an S3 lifecycle rule (``AbortIncompleteMultipartUpload``) does the
same server-side; this is for the S3-compatible stores that have none (README "Storage
hygiene").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from workers.io.storage import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger("vidqueue.hygiene")

# Uploads looked at (listed) and aborted per pass at most.
MAX_LISTED: Final = 5000
MAX_ABORTED: Final = 500


@dataclass(frozen=True)
class Cleaned:
    """What one pass did: uploads looked at, and aborted (older than the max age)."""

    listed: int
    aborted: int


def abort_stale_uploads(
    client: S3Client,
    bucket: str,
    prefix: str,
    max_age_s: float,
    *,
    now: datetime | None = None,
    max_listed: int = MAX_LISTED,
    max_aborted: int = MAX_ABORTED,
) -> Cleaned:
    """Abort the multipart uploads under ``prefix`` started more than ``max_age_s`` ago.

    Raises ``RetryableError`` / ``PermanentError`` (``storage_errors``) when S3 fails; an
    upload that is gone by the time it is aborted (another pass, or it completed) is fine."""
    edge = (now or datetime.now(UTC)) - timedelta(seconds=max_age_s)
    listed = aborted = 0
    marker: dict[str, Any] = {}
    while listed < max_listed and aborted < max_aborted:
        with storage_errors("list multipart uploads"):
            page = client.list_multipart_uploads(
                Bucket=bucket, Prefix=prefix, MaxUploads=min(1000, max_listed - listed), **marker
            )
        uploads = page.get("Uploads", [])
        listed += len(uploads)
        for upload in uploads:
            if aborted >= max_aborted:
                break
            started = upload.get("Initiated")
            if started is None or started > edge:
                continue
            if _abort(client, bucket, upload["Key"], upload["UploadId"]):
                aborted += 1
        if not page.get("IsTruncated") or not uploads:
            break
        marker = {
            "KeyMarker": page.get("NextKeyMarker", ""),
            "UploadIdMarker": page.get("NextUploadIdMarker", ""),
        }
    if aborted:
        log.info("aborted %d stale multipart upload(s) under s3://%s/%s", aborted, bucket, prefix)
    return Cleaned(listed, aborted)


def _abort(client: S3Client, bucket: str, key: str, upload_id: str) -> bool:
    with storage_errors("abort multipart upload"):
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except client.exceptions.NoSuchUpload:
            return False
    return True
