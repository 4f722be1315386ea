"""Concurrent multipart uploads into a real SeaweedFS, and the mirror's timer heartbeat."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from botocore.exceptions import ClientError

from config.settings import Settings
from devstack.ports import free_ports
from devstack.stack import Stack
from workers.domain.errors import STORAGE_UNAVAILABLE, PermanentError, RetryableError
from workers.io.storage import Storage, StoredObject
from workers.io.stream import heartbeats, mirror_url

MiB = 1024 * 1024
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def s3_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """SeaweedFS alone (no Redis, workers or simulator), with its credentials in os.environ."""
    run_dir: Path = tmp_path_factory.mktemp("s3") / "run"
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="mirror-upload-test",
        run_dir=str(run_dir),
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
    )
    saved = {name: os.environ.get(name) for name in AWS}
    with Stack(settings, {}, run_dir) as stack:
        os.environ.update({name: stack.env[name] for name in AWS})
        stack.start_s3()
        yield settings
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def storage(s3_settings: Settings) -> Storage:
    """Storage with 5 MiB parts (S3's smallest), 3 at a time."""
    store = Storage(s3_settings)
    store.part_size, store.concurrency = 5 * MiB, 3
    store.ensure_bucket()
    return store


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


class Counted:
    """Chunks passed through, counting the bytes read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.read = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += len(chunk)
            yield chunk


def read_back(storage: Storage, stored: StoredObject) -> bytes:
    body: bytes = storage.client.get_object(Bucket=stored.bucket, Key=stored.key)["Body"].read()
    return body


def test_a_multipart_object_goes_up_in_concurrent_parts_from_reused_buffers(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 3.5 parts of random bytes, arriving in odd-sized chunks, and a slow S3 part upload
    data = os.urandom(35 * MiB // 2)
    real_upload_part = storage.client.upload_part
    in_flight, most, bodies = [0], [0], []
    lock = threading.Lock()

    def upload_part(**kwargs: Any) -> Any:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            bodies.append((kwargs["PartNumber"], id(kwargs["Body"]), len(kwargs["Body"])))
        time.sleep(0.2)
        try:
            return real_upload_part(**kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(storage.client, "upload_part", upload_part)
    # When it is uploaded as a stream
    stored = storage.upload_stream("multi/video.mp4", pieces(data, 100_003), "video/mp4")
    # Then S3 holds exactly those bytes, with their size, sha256 and content type
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert read_back(storage, stored) == data
    head = storage.head("multi/video.mp4")
    assert (head["ContentLength"], head["ContentType"]) == (len(data), "video/mp4")
    # And it went up in 4 parts, several at once, the full ones straight from pooled buffers
    assert sorted(n for n, _, _ in bodies) == [1, 2, 3, 4]
    assert sorted(size for _, _, size in bodies) == [5 * MiB // 2, 5 * MiB, 5 * MiB, 5 * MiB]
    assert most[0] >= 2
    assert len({buffer for _, buffer, size in bodies if size == 5 * MiB}) <= 3


@pytest.mark.parametrize("size", [0, 1000, 5 * MiB - 1])
def test_an_object_under_one_part_is_one_put(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    stored = storage.upload_stream(f"small/{size}", pieces(data, 65536), "image/png")
    assert (stored.size, stored.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert read_back(storage, stored) == data
    assert "-" not in storage.head(f"small/{size}")["ETag"]  # not a multipart ETag


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(503, "SlowDown", RetryableError), (403, "AccessDenied", PermanentError)],
)
def test_a_failed_part_aborts_the_upload_and_maps_to_the_storage_error(
    storage: Storage,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    code: str,
    error: type[Exception],
) -> None:
    # Given S3 that refuses part 2 of an upload
    real_upload_part, real_abort = storage.client.upload_part, storage.client.abort_multipart_upload
    aborted: list[str] = []

    def upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(answer, "UploadPart")  # type: ignore[arg-type]
        time.sleep(0.1)
        return real_upload_part(**kwargs)

    def abort(**kwargs: Any) -> Any:
        aborted.append(kwargs["UploadId"])
        return real_abort(**kwargs)

    monkeypatch.setattr(storage.client, "upload_part", upload_part)
    monkeypatch.setattr(storage.client, "abort_multipart_upload", abort)
    # When a 40 MiB stream is uploaded
    key = f"fail/{status}"
    chunks = Counted(pieces(os.urandom(40 * MiB), MiB))
    with pytest.raises(error) as raised:
        storage.upload_stream(key, chunks, "video/mp4")
    # Then the error is the storage one, the upload was aborted, and reading stopped early
    assert raised.value.code == STORAGE_UNAVAILABLE  # type: ignore[attr-defined]
    assert f"upload part 2 failed: {code}" in str(raised.value)
    assert len(aborted) == 1
    pending = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=key)
    assert [u["UploadId"] for u in pending.get("Uploads", [])] == []
    assert chunks.read < 40 * MiB


def test_heartbeats_fire_on_a_timer_and_stop_with_the_block() -> None:
    beats: list[float] = []
    with heartbeats(lambda: beats.append(time.monotonic()), 0.05):
        time.sleep(0.32)
    count = len(beats)
    time.sleep(0.15)
    assert 3 <= count <= 7  # about 6; fewer only when the machine is very busy
    assert len(beats) == count


class SlowStorage:
    """Reads the stream as Storage would, and notes when each chunk arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []

    def object_key(self, job_id: str, name: str) -> str:
        return f"{job_id}/{name}"

    def upload_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> StoredObject:
        size = 0
        for chunk in chunks:
            self.arrived.append(time.monotonic())
            size += len(chunk)
        return StoredObject("b", key, size, "", content_type)


def test_the_mirror_heartbeat_fires_while_the_download_stalls() -> None:
    # Given a source that sends one chunk, stalls 0.6 s, then sends another
    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        time.sleep(0.6)
        yield b"y" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "2000"}, content=body())

    storage, beats = SlowStorage(), []

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) == 2:
            raise ConnectionError("Redis restarting")  # a failed beat does not stop the copy

    # When it is mirrored with a heartbeat every 0.1 s
    with httpx.Client(transport=httpx.MockTransport(handler)) as http, heartbeats(beat, 0.1):
        stored = mirror_url(
            http,
            cast(Storage, storage),
            url="https://cdn.example/v.mp4",
            headers={},
            job_id="j1",
            what="video",
        )
    # Then the claim was renewed during the stall, when no data arrived, and the copy finished
    assert stored.size == 2000
    first, second = storage.arrived[0], storage.arrived[-1]
    assert len([t for t in beats if first < t < second]) >= 3  # about 5
