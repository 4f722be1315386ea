"""Job history in S3: the archive's layout, its documents, and the calls that write, verify,
read and list them.

Why this layout: a finished job leaves Redis after the hot window (``workers.steps.archive``),
and every read of it afterwards must find it from its id alone. Job ids are UUIDv7s, whose
first 48 bits are the creation time in ms, so the key is derived from the id:
``{s3_prefix}records/YYYY/MM/DD/{id}.json.gz`` (the UTC day the job was created). One day is
one prefix: ``ListObjectsV2`` pages through it in id order, which is creation order, and an S3
lifecycle rule on the prefix decides how long history is kept.

Why the document is deterministic (sorted keys, gzip without a timestamp): archiving is
write → verify → delete from Redis, and an archiver killed after the write writes again on
its next pass. The same job makes the same bytes, so a rewrite is a no-op for readers and
for the verification (the ETag of a single PUT is the MD5 of its body).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from botocore.exceptions import ClientError

from workers.domain.errors import STORAGE_UNAVAILABLE, RetryableError
from workers.domain.jobs import JobRecord
from workers.domain.uuid7 import day_of
from workers.io.storage import Storage, storage_errors

FORMAT: Final = "vidqueue.archive/1"
FOLDER: Final = "records/"
SUFFIX: Final = ".json.gz"
CONTENT_TYPE: Final = "application/gzip"
# Archived records read at once for one page of a listing (small GETs: latency-bound).
READ_CONCURRENCY: Final = 8


@dataclass(frozen=True)
class Archived:
    """A job as the archive holds it: the public record (without presigned URLs), the
    producer that owns it, and its timeline."""

    record: JobRecord
    producer: str
    events: list[dict[str, Any]]


class ArchiveMismatch(RetryableError):
    """What S3 holds after a write is not what was written: the job stays in Redis."""

    code = STORAGE_UNAVAILABLE


def day_prefix(prefix: str, day: date) -> str:
    """``{prefix}records/YYYY/MM/DD/``: one day of the archive."""
    return f"{prefix}{FOLDER}{day:%Y/%m/%d}/"


def key_of(prefix: str, job_id: str) -> str | None:
    """The archive key of a job (None when its id is not a UUIDv7: it is never archived)."""
    day = day_of(job_id)
    return None if day is None else f"{day_prefix(prefix, day)}{job_id}{SUFFIX}"


def encode(record: JobRecord, producer: str, events: Sequence[dict[str, Any]]) -> bytes:
    """The gzipped JSON document of a job: the same job always gives the same bytes."""
    data = record.model_dump(mode="json")
    if data.get("result"):
        data["result"] = {
            name: {k: v for k, v in item.items() if k != "url"}
            for name, item in data["result"].items()
        }
    doc = {"format": FORMAT, "producer": producer, "record": data, "events": list(events)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def decode(body: bytes) -> Archived:
    doc = json.loads(gzip.decompress(body))
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a vidqueue archive document: {doc.get('format')!r}")
    return Archived(JobRecord.model_validate(doc["record"]), str(doc["producer"]), doc["events"])


def put_verified(storage: Storage, key: str, body: bytes) -> None:
    """Write ``body`` at ``key``, then make sure S3 holds exactly it (the length and the MD5
    ETag of a single PUT; where the ETag is not an MD5, e.g. SSE-KMS, the object is read back
    and compared). Raises ``ArchiveMismatch`` or a storage error: the caller keeps the job."""
    md5 = hashlib.md5(body, usedforsecurity=False)
    with storage_errors("archive record"):
        storage.client.put_object(
            Bucket=storage.bucket,
            Key=key,
            Body=body,
            ContentType=CONTENT_TYPE,
            ContentMD5=base64.b64encode(md5.digest()).decode(),
        )
    with storage_errors("verify archived record"):
        head = storage.client.head_object(Bucket=storage.bucket, Key=key)
        if head.get("ContentLength") != len(body):
            raise ArchiveMismatch(f"archive: {key} holds {head.get('ContentLength')} bytes")
        if head.get("ETag", "").strip('"') == md5.hexdigest():
            return
        stored = storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
    if stored != body:
        raise ArchiveMismatch(f"archive: {key} does not hold what was written")


def read(storage: Storage, job_id: str) -> Archived | None:
    """The archived job, or None when the archive has no such job."""
    key = key_of(storage.prefix, job_id)
    if key is None:
        return None
    with storage_errors("read archived record"):
        try:
            body = storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
    return decode(body)


def read_many(storage: Storage, job_ids: Iterable[str]) -> list[Archived | None]:
    """``read`` for several jobs at once (a listing's page), in order."""
    ids = list(job_ids)
    if len(ids) <= 1:
        return [read(storage, job_id) for job_id in ids]
    with ThreadPoolExecutor(min(READ_CONCURRENCY, len(ids))) as pool:
        return list(pool.map(lambda job_id: read(storage, job_id), ids))


@dataclass(frozen=True)
class DayPage:
    """Job ids of one archived day, in id (creation) order, and whether more follow."""

    job_ids: list[str]
    truncated: bool


def list_day(storage: Storage, day: date, *, after: str | None, limit: int) -> DayPage:
    """Up to ``limit`` job ids archived under ``day``, after the job id ``after``."""
    prefix = day_prefix(storage.prefix, day)
    args: dict[str, Any] = {"Bucket": storage.bucket, "Prefix": prefix, "MaxKeys": limit}
    if after:
        args["StartAfter"] = f"{prefix}{after}{SUFFIX}"
    with storage_errors("list archived records"):
        answer = storage.client.list_objects_v2(**args)
    ids = [
        item["Key"][len(prefix) : -len(SUFFIX)]
        for item in answer.get("Contents", [])
        if item["Key"].endswith(SUFFIX)
    ]
    return DayPage(ids, bool(answer.get("IsTruncated")))


def delete(storage: Storage, job_id: str) -> None:
    """Delete a job's archived record (a purge of an archived job)."""
    key = key_of(storage.prefix, job_id)
    if key is None:
        return
    with storage_errors("delete archived record"):
        storage.client.delete_object(Bucket=storage.bucket, Key=key)


def _missing(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
