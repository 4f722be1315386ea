"""S3 as the producer side reaches it: uploads, the ownership check of a spec's uploads, a job's
mirrored files (a fresh presigned URL on every read of a record, since a stored URL would
expire; deletion when a finished job is purged).

Why ``RequestS3`` and not the workers' ``Storage`` as is: a caller is waiting. The mirror's client
waits 60 s for a read and tries three times; on a stalled S3 an upload then hung for 90 s and
more, and enough of them took every thread of the API's shared pool, so routes that never touch
S3 (``/healthz``, reading a job) timed out too. Here S3 calls
- use their own client: connect and read timeouts of seconds, one attempt;
- run on their own few threads (``s3_request_concurrency``); more calls may wait for one
  (``ADMITTED_PER_THREAD``), and of those, only as many as there are S3 threads may wait
  holding a thread of the API's shared pool (a sync route's); a call beyond is refused at
  once (503), so waiting threads never pile up, and a burst on a healthy S3 still gets in;
- are answered by the deadline (``s3_request_deadline_s``, a 503 when S3 is too slow), while
  the thread finishes on its own timeouts and only then lets the next call in.
Presigning is local computation and stays outside all this.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, Final, ParamSpec, TypeVar

from config.settings import Settings
from producer import validation
from workers.domain.errors import STORAGE_UNAVAILABLE, RetryableError
from workers.domain.jobs import JobRecord, JobSpec
from workers.io import uploads
from workers.io.storage import Storage, s3_client, storage_errors

P = ParamSpec("P")
T = TypeVar("T")

# Calls let in per S3 thread (running or waiting for it). A waiting call holds no thread when
# awaited from the event loop (``run``), and never runs once its caller has given up.
ADMITTED_PER_THREAD: Final = 8

# Set on the threads of every ``RequestS3``: a call made there (a gated function calling
# another) runs at once instead of waiting for a thread its caller holds.
_on_s3_thread = threading.local()


def _mark_s3_thread() -> None:
    _on_s3_thread.yes = True


class RequestS3:
    """S3 for request paths, bounded in time and in threads (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deadline_s = settings.s3_request_deadline_s
        self._storage: Storage | None = None
        self._building = threading.Lock()
        threads = settings.s3_request_concurrency
        self._admitted = threading.BoundedSemaphore(ADMITTED_PER_THREAD * threads)
        self._blocking = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="s3-request", initializer=_mark_s3_thread
        )

    @property
    def storage(self) -> Storage:
        """The bucket through a client of short timeouts and one attempt: a stalled S3 is
        reported in seconds, and the caller may retry (a 503 says so). Built on first use,
        under a lock: S3 threads and presigning threads may ask at once, and boto3's default
        session must not build two clients at the same time."""
        if self._storage is None:
            with self._building:
                if self._storage is None:
                    s = self.settings
                    client = s3_client(
                        s.s3_endpoint_url,
                        connect_s=s.s3_request_connect_timeout_s,
                        read_s=s.s3_request_read_timeout_s,
                        retries=0,
                    )
                    self._storage = Storage(s, client)
        return self._storage

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` on an S3 thread, for a caller on any other thread: its result by the deadline,
        else ``RetryableError`` (a 503)."""
        if getattr(_on_s3_thread, "yes", False):
            return fn(*args, **kwargs)
        if not self._blocking.acquire(blocking=False):
            raise _busy()
        try:
            future = self._submit(partial(fn, *args, **kwargs))
            if not wait([future], timeout=self.deadline_s).done:
                future.cancel()  # still waiting for a thread: it never runs
                raise _too_slow()
        finally:
            self._blocking.release()
        return future.result()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call`` for the event loop: it waits without holding any thread."""
        waiting = asyncio.wrap_future(self._submit(partial(fn, *args, **kwargs)))
        done, _ = await asyncio.wait({waiting}, timeout=self.deadline_s)
        if not done:
            waiting.cancel()  # cancels the call too, if it has no thread yet
            raise _too_slow()
        return waiting.result()

    def _submit(self, fn: Callable[[], T]) -> Future[T]:
        """Start ``fn`` if a thread, or a place to wait for one, is free; else refuse at once.
        The place is given back when ``fn`` ends (or is cancelled), not when its caller gives
        up: that is what bounds the threads held by a stalled S3."""
        if not self._admitted.acquire(blocking=False):
            raise _busy()
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._admitted.release()
            raise
        future.add_done_callback(lambda _: self._admitted.release())
        return future

    def upload(self, data: bytes, producer: str) -> uploads.Upload:
        """Check an image's size, then store it (``workers.io.uploads.save``)."""
        validation.check_upload_size(data)
        return self.call(uploads.save, self.storage, data, producer=producer)

    def check_owned(self, spec: JobSpec, producer: str) -> None:
        """``InvalidSpec`` unless every upload the spec names is the producer's (asks S3)."""
        self.call(uploads.check_owned, self.storage, spec, producer)

    def delete(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Delete mirrored files, all within one deadline."""
        self.call(delete, self.storage, list(items))

    def presigned(self, record: JobRecord) -> JobRecord:
        """Local computation, no request to S3: never gated, so reads stay fast."""
        return self.storage.presigned(record)


def _busy() -> RetryableError:
    return RetryableError("storage: too many requests wait on S3", code=STORAGE_UNAVAILABLE)


def _too_slow() -> RetryableError:
    return RetryableError("storage: S3 did not answer in time", code=STORAGE_UNAVAILABLE)


def delete(storage: Storage, items: Iterable[Mapping[str, Any]]) -> None:
    """Delete mirrored files (``{bucket, key, ...}`` items of a record's ``result``)."""
    for item in items:
        with storage_errors("delete object"):
            storage.client.delete_object(Bucket=item["bucket"], Key=item["key"])
