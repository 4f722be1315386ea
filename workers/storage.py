"""S3-compatible storage: streaming multipart uploads with bounded memory, and presigned URLs.

Memory stays at about one part (``PART_SIZE``) whatever the object's size: chunks from the
download are collected into a part buffer, each full part is uploaded and dropped. The sha256
and byte count are computed on the way through.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from config.settings import Settings
from workers.errors import STORAGE_UNAVAILABLE, PermanentError, RetryableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger("vidqueue.storage")

# S3's minimum part size is 5 MiB (except the last part); 8 MiB keeps memory low and parts few.
PART_SIZE: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client(endpoint_url: str) -> S3Client:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # boto3 >= 1.36 sends CRC checksum headers by default; some S3-compatible servers
        # reject them. Send and validate checksums only where the API requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Translate boto errors once: server-side and network trouble is retryable."""
    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        message = f"storage: {action} failed: {code or status}"
        if status >= 500 or status in (0, 408, 429) or code in ("SlowDown", "RequestTimeout"):
            raise RetryableError(message, code=STORAGE_UNAVAILABLE) from exc
        raise PermanentError(message, code=STORAGE_UNAVAILABLE) from exc
    except BotoCoreError as exc:
        raise RetryableError(f"storage: {action} failed: {exc}", code=STORAGE_UNAVAILABLE) from exc


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.presign_ttl_s = settings.presign_ttl_s
        self.client = _client(settings.s3_endpoint_url)
        self._presigner = _client(settings.s3_presign_endpoint_url)
        self._bucket_ready = False

    def object_key(self, job_id: str, name: str) -> str:
        return f"{self.prefix}{job_id}/{name}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (once per process)."""
        if self._bucket_ready:
            return
        with storage_errors("create bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 404:
                    raise
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as again:
                    if again.response.get("Error", {}).get("Code") not in (
                        "BucketAlreadyOwnedByYou",
                        "BucketAlreadyExists",
                    ):
                        raise
        self._bucket_ready = True

    def upload_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> StoredObject:
        """Upload a stream of chunks; small objects in one PUT, larger ones in parts."""
        digest = hashlib.sha256()
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self._start(key, content_type)
                    parts.append(self._part(key, upload_id, len(parts) + 1, buffer[:PART_SIZE]))
                    del buffer[:PART_SIZE]
            if upload_id is None:
                with storage_errors("put object"):
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=bytes(buffer), ContentType=content_type
                    )
            else:
                if buffer:
                    parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
                with storage_errors("complete upload"):
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    )
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise
        return StoredObject(self.bucket, key, size, digest.hexdigest(), content_type)

    def _start(self, key: str, content_type: str) -> str:
        with storage_errors("start multipart upload"):
            started = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        return started["UploadId"]

    def _part(self, key: str, upload_id: str, number: int, data: bytearray) -> dict[str, Any]:
        with storage_errors(f"upload part {number}"):
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
            )
        return {"ETag": answer["ETag"], "PartNumber": number}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            log.warning("could not abort multipart upload of %s", key)

    def presign(self, key: str, bucket: str | None = None) -> str:
        """A SigV4 GET URL on the public endpoint, valid for ``presign_ttl_s``."""
        return self._presigner.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket or self.bucket, "Key": key},
            ExpiresIn=self.presign_ttl_s,
        )

    def head(self, key: str) -> dict[str, Any]:
        with storage_errors("head object"):
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
