"""S3-compatible storage: streaming multipart uploads with bounded memory, and presigned URLs.

Why our own multipart code and not boto3's TransferManager (``upload_fileobj``): the source is a
non-seekable download whose sha256 and byte count we must record, computed once over exactly the
bytes uploaded. The TransferManager reads such a stream into a fresh ``bytes`` per part and wraps
it in a file object that botocore reads again (Expect: 100-continue, payload signature), and it
holds up to ``max_in_memory_upload_chunks`` (10) parts. Here the download is copied once
into a fixed pool of part-sized buffers (``concurrency`` + 1: one per part in flight and the one
being filled), each full buffer goes to ``upload_part`` as is, ``concurrency`` parts at a time,
and goes back to the pool when its part is stored. When every buffer is in flight the reader
waits, so memory stays at about (``concurrency`` + 1) × ``part_size`` (40 MiB) whatever the
object's size (``tests/bench_mirror.py`` measures it, and the speed against boto3).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from config.settings import Settings
from workers.domain.errors import STORAGE_UNAVAILABLE, PermanentError, RetryableError
from workers.domain.jobs import JobRecord

if TYPE_CHECKING:
    from hashlib import _Hash

    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger("vidqueue.storage")

# S3's minimum part size is 5 MiB (except the last part); 8 MiB keeps memory low and parts few.
PART_SIZE: Final = 8 * 1024 * 1024
# Parts uploaded at once. boto3's client pool holds 10 connections, more than enough.
CONCURRENCY: Final = 4


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def s3_client(
    endpoint_url: str, *, connect_s: float = 5, read_s: float = 60, retries: int = 3
) -> S3Client:
    """A client with our settings. The defaults are the mirror's: a copy may ride out a slow S3.
    The API's request paths and its readiness probe pass short timeouts and no retries
    (``producer.files``, ``producer.health``). ``retries`` counts tries after the first
    (botocore's ``max_attempts``)."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # boto3 >= 1.36 sends CRC checksum headers by default; some S3-compatible servers
        # reject them. Send and validate checksums only where the API requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=connect_s,
        read_timeout=read_s,
        retries={"max_attempts": retries, "mode": "standard"},
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


class _Buffers:
    """At most ``count`` part buffers, made when first needed and then reused.

    ``take`` waits for one to come back while all are in flight, and raises the failure of a
    part instead once one has failed, so the reader stops at once.
    """

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._left = count
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self.failure: BaseException | None = None

    def take(self) -> bytearray:
        if self.failure is None and self._free.empty() and self._left > 0:
            self._left -= 1
            return bytearray(self.size)
        buffer = self._free.get()
        if self.failure is not None:
            raise self.failure
        return buffer

    def give(self, buffer: bytearray, failure: BaseException | None = None) -> None:
        if failure is not None and self.failure is None:
            self.failure = failure
        self._free.put(buffer)


def _fill(
    chunks: Iterable[bytes], buffers: _Buffers, digest: _Hash
) -> Iterator[tuple[bytearray, int]]:
    """Copy the stream into part buffers (its only copy), hashing it on the way.

    Yields each full buffer, then the last one with what is left (possibly nothing).
    """
    size = buffers.size
    buffer, filled = buffers.take(), 0
    for chunk in chunks:
        digest.update(chunk)
        data = memoryview(chunk)
        while data:
            n = min(len(data), size - filled)
            buffer[filled : filled + n] = data[:n]
            filled += n
            data = data[n:]
            if filled == size:
                yield buffer, filled
                buffer, filled = buffers.take(), 0
    yield buffer, filled


class Storage:
    part_size: int = PART_SIZE
    concurrency: int = CONCURRENCY

    def __init__(self, settings: Settings, client: S3Client | None = None) -> None:
        """``client``: for the S3 calls (presigning never calls S3); the mirror's by default."""
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.presign_ttl_s = settings.presign_ttl_s
        self.client = client or s3_client(settings.s3_endpoint_url)
        self._presigner = s3_client(settings.s3_presign_endpoint_url)
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
        """Upload a stream of chunks: under one part in one PUT, else in concurrent parts."""
        digest = hashlib.sha256()
        buffers = _Buffers(self.concurrency + 1, self.part_size)
        parts = _fill(chunks, buffers, digest)
        first, size = next(parts)
        if size < self.part_size:
            with storage_errors("put object"):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=memoryview(first)[:size].tobytes(),
                    ContentType=content_type,
                )
        else:
            parts = itertools.chain([(first, size)], parts)
            size = self._multipart(key, content_type, parts, buffers)
        return StoredObject(self.bucket, key, size, digest.hexdigest(), content_type)

    def _multipart(
        self,
        key: str,
        content_type: str,
        parts: Iterator[tuple[bytearray, int]],
        buffers: _Buffers,
    ) -> int:
        """Upload ``parts`` ``concurrency`` at a time; abort the upload if anything fails."""
        upload_id = self._start(key, content_type)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part")
        sent: list[Future[dict[str, Any]]] = []
        size = 0
        try:
            for number, (buffer, length) in enumerate(parts, start=1):
                if length == 0:
                    break
                size += length
                sent.append(
                    pool.submit(self._part, key, upload_id, number, buffer, length, buffers)
                )
            done = [future.result() for future in sent]
            with storage_errors("complete upload"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},  # type: ignore[typeddict-item]
                )
        except BaseException:
            # Parts still in flight finish first: none may land after the abort.
            pool.shutdown(wait=True, cancel_futures=True)
            self._abort(key, upload_id)
            raise
        pool.shutdown()
        return size

    def _start(self, key: str, content_type: str) -> str:
        with storage_errors("start multipart upload"):
            started = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        return started["UploadId"]

    def _part(
        self,
        key: str,
        upload_id: str,
        number: int,
        buffer: bytearray,
        length: int,
        buffers: _Buffers,
    ) -> dict[str, Any]:
        """Upload one part (runs on the pool), then hand its buffer back for the next."""
        failure: BaseException | None = None
        # A whole buffer goes as is; only the last, short part is copied out.
        body = buffer if length == len(buffer) else buffer[:length]
        try:
            with storage_errors(f"upload part {number}"):
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,  # type: ignore[arg-type]  # botocore sends a bytearray as is
                )
            return {"ETag": answer["ETag"], "PartNumber": number}
        except BaseException as exc:
            failure = exc
            raise
        finally:
            buffers.give(buffer, failure)

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

    def presigned(self, record: JobRecord) -> JobRecord:
        """The record with a freshly presigned ``url`` on each of its mirrored files (a local
        computation, no request to S3): what every read and every webhook shows."""
        if not record.result:
            return record
        result = {
            name: {**item, "url": self.presign(item["key"], item.get("bucket"))}
            if isinstance(item, dict) and item.get("key")
            else item
            for name, item in record.result.items()
        }
        return record.model_copy(update={"result": result})

    def head(self, key: str) -> dict[str, Any]:
        with storage_errors("head object"):
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
