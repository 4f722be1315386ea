"""Result media: deterministic MP4 and PNG bytes, expiring URLs, and the routes serving them.

Media is provider-neutral: every wire format hands out URLs from :func:`issue_urls` and the
files live under ``/files/{task_id}/``. Content depends only on the task id and size, so a test
can recompute a file's sha256 (``GET /_sim/tasks/{id}/sha256``) without downloading it. The MP4
is generated chunk by chunk and never held in memory, because vidqueue's tests use files of tens
of MB.

The video is a real, playable MP4 (``assets/sample.mp4``: 2 s of ffmpeg's test pattern, 320x180,
H.264 baseline, moov first, 8 KB) followed by a trailing ``free`` box holding pseudo-random bytes
of the task, up to the requested size: players skip ``free`` boxes, so a browser plays every
job's video, while each job's file still differs and has exactly the configured size. The sample
was made once with::

    ffmpeg -f lavfi -i testsrc=duration=2:size=320x180:rate=15 -c:v libx264 -profile:v baseline \
      -level 3.0 -pix_fmt yuv420p -preset veryslow -crf 32 -g 30 -movflags +faststart -an \
      -map_metadata -1 -fflags +bitexact -flags:v +bitexact sample.mp4

A size too small to hold the sample gets the older, unplayable header-only file (``ftyp`` +
``moov``/``mvhd`` + an ``mdat`` of pseudo-random bytes).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from simulator import faults
from simulator.faults import Fault
from simulator.state import Registry, Task, TaskState

CHUNK_BYTES: Final = 64 * 1024
_COVER_SIZE: Final = (64, 36)
_DEMO_SIZE: Final = (64, 64)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mp4_header(total_size: int) -> bytes:
    """``ftyp`` + ``moov``(``mvhd``) + the ``mdat`` box header sized to fill ``total_size``.

    The ``mvhd`` is version 0: 5 s at timescale 1000, identity matrix, no tracks. Enough for
    tools that check box structure; it is not meant to decode to frames.
    """
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">I4I", 0, 0, 0, 1000, 5000)  # version+flags, ctime, mtime, scale, duration
        + struct.pack(">IH10x", 0x10000, 0x0100)  # rate 1.0, volume 1.0, reserved
        + matrix
        + bytes(24)  # pre_defined
        + struct.pack(">I", 1),  # next_track_ID
    )
    head = ftyp + _box(b"moov", mvhd)
    mdat_size = total_size - len(head)
    if mdat_size < 8:
        raise ValueError(f"video of {total_size} bytes cannot hold its headers")
    return head + struct.pack(">I", mdat_size) + b"mdat"


@cache
def sample_mp4() -> bytes:
    """The playable sample every large enough video starts with (read once, 8 KB)."""
    return resources.files("simulator").joinpath("assets", "sample.mp4").read_bytes()


def _video_head(total_size: int) -> bytes:
    """Everything before the pseudo-random payload: the sample and the header of a ``free`` box
    filling the file to ``total_size`` (a 32-bit size: ``MAX_VIDEO_BYTES`` is 2 GiB), or, when
    the sample does not fit, the header-only MP4."""
    sample = sample_mp4()
    room = total_size - len(sample)
    if room < 8:
        return _mp4_header(total_size)
    return sample + struct.pack(">I", room) + b"free"


def video_chunks(task_id: str, total_size: int) -> Iterator[bytes]:
    """The MP4 of ``task_id``, exactly ``total_size`` bytes, in chunks of at most 64 KiB.

    The headers share the first chunk with the start of the payload, so chunks fall on the same
    64 KiB boundaries whatever the headers' size (a throttled download paces the same way).
    Payload piece ``i`` is SHAKE-256 of the task id and ``i``: reproducible, cheap, and the same
    prefix whatever the file size.
    """
    head = _video_head(total_size)
    remaining = total_size - len(head)
    index = 0
    while remaining > 0 or head:
        size = min(CHUNK_BYTES - len(head), remaining)
        piece = hashlib.shake_256(f"vidqueue-sim/mdat/{task_id}/{index}".encode()).digest(size)
        yield head + piece
        head = b""
        remaining -= size
        index += 1


def _png(width: int, height: int, top: bytes, bottom: bytes) -> bytes:
    """An 8-bit RGB PNG fading vertically from colour ``top`` to ``bottom``."""
    rows = []
    for y in range(height):
        t = y / max(1, height - 1)
        pixel = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows.append(b"\x00" + pixel * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def cover_png(task_id: str) -> bytes:
    """A small cover whose colours come from the task id, so it is deterministic per task."""
    digest = hashlib.sha256(f"vidqueue-sim/cover/{task_id}".encode()).digest()
    return _png(*_COVER_SIZE, digest[0:3], digest[3:6])


def demo_png() -> bytes:
    """A fixed PNG for image-to-video demo inputs."""
    return _png(*_DEMO_SIZE, b"\x20\x60\xc0", b"\xf0\xa0\x30")


def media_sha256(task: Task) -> dict[str, object]:
    """Hashes of what the task's URLs serve, computed by streaming the same generators."""
    video = hashlib.sha256()
    for piece in video_chunks(task.id, task.video_bytes):
        video.update(piece)
    return {
        "video": video.hexdigest(),
        "cover": hashlib.sha256(cover_png(task.id)).hexdigest(),
        "video_size": task.video_bytes,
    }


@dataclass(frozen=True)
class MediaUrls:
    video: str
    cover: str


def issue_urls(base_url: str, task: Task, registry: Registry) -> MediaUrls:
    """Absolute result URLs that expire ``url_ttl_s`` from now (rounded up to a whole second)."""
    expires = math.ceil(registry.clock.time() + registry.options.url_ttl_s)
    base = f"{base_url.rstrip('/')}/files/{task.id}"
    return MediaUrls(
        video=f"{base}/video.mp4?expires={expires}",
        cover=f"{base}/cover.png?expires={expires}",
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)


def _servable(registry: Registry, task_id: str, expires: str | None) -> Task | JSONResponse:
    """The task whose media may be served, or the error response saying why not."""
    task = registry.get(task_id)
    if task is None or registry.state(task) is not TaskState.SUCCEEDED:
        return _error(404, "no such file")
    try:
        deadline = int(expires) if expires is not None else None
    except ValueError:
        deadline = None
    if deadline is None or registry.clock.time() > deadline:
        registry.counters.expired_url_403 += 1
        return _error(403, "url expired or not signed")
    return task


def _video_response(task: Task, registry: Registry) -> Response:
    """The video as a stream, unless an injected fault makes it fail, crawl or stop short."""
    chunks = video_chunks(task.id, task.video_bytes)
    fault = faults.download_fault(registry)
    if fault is Fault.DOWNLOAD_500:
        return _error(500, "simulated media server error")
    if fault is Fault.DOWNLOAD_TRUNCATED:
        cut_at = int(task.video_bytes * registry.uniform(0.0, 0.9))
        return faults.CutShort(
            chunks, total=task.video_bytes, cut_at=cut_at, media_type="video/mp4"
        )
    body: Iterator[bytes] | AsyncIterator[bytes] = chunks
    if fault is Fault.DOWNLOAD_SLOW:
        body = faults.throttled(chunks, registry.options.slow_download_bytes_per_s)
    return StreamingResponse(
        body, media_type="video/mp4", headers={"Content-Length": str(task.video_bytes)}
    )


def files_router(registry: Registry) -> APIRouter:
    """``GET /files/{task_id}/video.mp4`` and ``/cover.png``, both needing a live ``expires``."""
    router = APIRouter()

    @router.get("/files/{task_id}/video.mp4", response_model=None)
    async def video(task_id: str, expires: str | None = None) -> Response:
        task = _servable(registry, task_id, expires)
        if isinstance(task, JSONResponse):
            return task
        registry.counters.downloads += 1
        return _video_response(task, registry)

    @router.get("/files/{task_id}/cover.png", response_model=None)
    async def cover(task_id: str, expires: str | None = None) -> Response:
        task = _servable(registry, task_id, expires)
        if isinstance(task, JSONResponse):
            return task
        registry.counters.cover_downloads += 1
        return Response(cover_png(task.id), media_type="image/png")

    return router
