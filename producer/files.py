"""A job's mirrored files in S3, as the producer side reaches them: a fresh presigned URL on
every read of a record (a stored URL would expire), and deletion when a finished job is purged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workers.domain.jobs import JobRecord
from workers.io.storage import Storage, storage_errors


def presigned(storage: Storage, record: JobRecord) -> JobRecord:
    """The record with a freshly presigned ``url`` on each of its mirrored files."""
    if not record.result:
        return record
    result = {
        name: {**item, "url": storage.presign(item["key"], item["bucket"])}
        for name, item in record.result.items()
    }
    return record.model_copy(update={"result": result})


def delete(storage: Storage, items: Iterable[Mapping[str, Any]]) -> None:
    """Delete mirrored files (``{bucket, key, ...}`` items of a record's ``result``)."""
    for item in items:
        with storage_errors("delete object"):
            storage.client.delete_object(Bucket=item["bucket"], Key=item["key"])
