"""Copy one provider result (the video, or its cover) into S3 as a stream.

Object keys are deterministic (``{prefix}{job_id}/video.mp4``, ``…/cover.<ext>``), so a retried
mirror overwrites the same object and never duplicates one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import urlsplit

import httpx

from workers.domain.errors import MIRROR_FAILED, PermanentError, ResultUrlExpired, RetryableError
from workers.io.storage import Storage, StoredObject

log = logging.getLogger("vidqueue.mirror")

# Media hosts answer these for a link that is no longer valid.
EXPIRED_STATUSES: Final = frozenset({401, 403, 404, 410})
COVER_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
# How long the end of a heartbeat block waits at most for a beat in flight.
BEAT_JOIN_S: Final = 30.0


def cover_name(url: str, content_type: str) -> str:
    ext = COVER_EXTENSIONS.get(content_type)
    if ext is None:
        suffix = PurePosixPath(urlsplit(url).path).suffix.lstrip(".").lower()
        ext = suffix if suffix in ("png", "jpg", "jpeg", "webp") else "img"
    return f"cover.{ext}"


def mirror_url(
    http: httpx.Client,
    storage: Storage,
    *,
    url: str,
    headers: dict[str, str],
    job_id: str,
    what: str,
) -> StoredObject:
    """Stream ``url`` into S3. ``what`` is ``video`` or ``cover`` (it picks the object name).
    The caller keeps its claim alive around it (``heartbeats``)."""
    try:
        with http.stream("GET", url, headers=headers, timeout=TIMEOUT) as response:
            _check(response, what)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            if what == "video":
                name, content_type = "video.mp4", content_type or "video/mp4"
            else:
                name = cover_name(url, content_type)
                content_type = content_type or "application/octet-stream"
            expected = response.headers.get("content-length")
            # Chunks as they come off the socket: the part buffers regroup them, no re-chunking.
            chunks = response.iter_bytes()
            stored = storage.upload_stream(storage.object_key(job_id, name), chunks, content_type)
    except httpx.TransportError as exc:
        raise RetryableError(f"{what} download failed: {type(exc).__name__}") from exc
    if expected is not None and expected.isdigit() and int(expected) != stored.size:
        raise RetryableError(f"{what} download truncated: {stored.size} of {expected} bytes")
    return stored


@contextmanager
def heartbeats(beat: Callable[[], None], every_s: float) -> Iterator[None]:
    """Call ``beat`` every ``every_s`` seconds from a small thread while the block runs.

    On a timer, not as data arrives: a copy stalled on a slow read or a full part pool still
    renews its claim, and a process killed mid-copy stops renewing at once, so its claim can be
    short. A failed beat is logged and the block goes on (a Redis restart must not cut a copy).
    """
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            try:
                beat()
            except Exception:
                log.warning("heartbeat failed", exc_info=True)

    thread = threading.Thread(target=run, name="vidqueue-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # A beat in flight ends first, so none lands after what the caller writes next (a
        # Redis call gives up within its socket timeout; the bound is for any other ``beat``).
        thread.join(timeout=BEAT_JOIN_S)


def _check(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 300:
        return
    if status in EXPIRED_STATUSES:
        raise ResultUrlExpired(f"{what} URL answered HTTP {status}: the link expired")
    if status >= 500 or status in (408, 429):
        raise RetryableError(f"{what} download answered HTTP {status}")
    raise PermanentError(f"{what} download answered HTTP {status}", code=MIRROR_FAILED)
