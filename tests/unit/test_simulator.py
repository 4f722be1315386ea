"""The provider simulator speaks Zhipu's wire format and keeps honest counters.

Most tests drive the ASGI app in-process with a fake clock, so generation "takes" no real time;
one test runs a real uvicorn server to check streaming of a large video over a socket.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from simulator import cli
from simulator.app import create_app
from simulator.media import CHUNK_BYTES, sample_mp4, video_chunks
from simulator.options import SimOptions
from tests.support.adapter_contract import FakeClock
from tests.support.sim import ZHIPU, serving

pytestmark = pytest.mark.anyio

KEY_A = {"Authorization": "Bearer key-a"}
KEY_B = {"Authorization": "Bearer key-b"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


Sim = tuple[httpx.AsyncClient, FakeClock]
MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Build a fresh simulator (own state, fake clock) with the given options."""
    async with AsyncExitStack() as stack:

        async def build(**options: Any) -> Sim:
            defaults: dict[str, Any] = {"gen_time_s": 0.05, "gen_jitter_s": 0.0, "seed": 1}
            clock = FakeClock()
            app = create_app(SimOptions(**{**defaults, **options}), clock=clock)
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://sim.test"
            )
            await stack.enter_async_context(client)
            return client, clock

        yield build


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str] = KEY_A, **body: Any
) -> httpx.Response:
    payload = {"model": "cogvideox-3", "prompt": "a cat surfing", **body}
    return await client.post(f"{ZHIPU}/videos/generations", json=payload, headers=headers)


async def poll(
    client: httpx.AsyncClient, task_id: str, headers: dict[str, str] = KEY_A
) -> httpx.Response:
    return await client.get(f"{ZHIPU}/async-result/{task_id}", headers=headers)


async def finished_task(make_sim: MakeSim, **options: Any) -> tuple[Sim, str, dict[str, Any]]:
    """A simulator holding one finished task: its id and the SUCCESS poll body."""
    client, clock = await make_sim(**options)
    task_id = (await submit(client)).json()["id"]
    clock.advance(1)
    body = (await poll(client, task_id)).json()
    return (client, clock), task_id, body


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return result


def mp4_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """Top-level (type, size) boxes; asserts they tile the file exactly."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        assert size >= 8
        boxes.append((kind, size))
        offset += size
    assert offset == len(data)
    return boxes


def assert_valid_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    offset, kinds = len(PNG_SIGNATURE), []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


# --- submit ---------------------------------------------------------------------------------


async def test_submit_answers_processing_with_numeric_id_and_the_given_request_id(
    make_sim: MakeSim,
) -> None:
    client, _ = await make_sim()
    response = await submit(client, request_id="req-123")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "id", "request_id", "task_status"}
    assert body["model"] == "cogvideox-3"
    assert body["request_id"] == "req-123"
    assert body["task_status"] == "PROCESSING"
    assert isinstance(body["id"], str)
    assert body["id"].isdigit()


async def test_submit_generates_a_request_id_when_none_is_given(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    body = (await submit(client)).json()
    assert isinstance(body["request_id"], str)
    assert body["request_id"]


@pytest.mark.parametrize(
    "image",
    ["https://x.test/a.png", ["https://x.test/first.png", "https://x.test/last.png"]],
)
async def test_submit_accepts_image_url_as_string_or_first_last_pair(
    make_sim: MakeSim, image: str | list[str]
) -> None:
    client, _ = await make_sim()
    response = await submit(client, model="viduq1-start-end", prompt=None, image_url=image)
    assert response.status_code == 200


async def test_submit_accepts_every_documented_field(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    response = await submit(
        client,
        model="vidu2-image",
        image_url="data:image/png;base64,AAAA",
        quality="quality",
        with_audio=True,
        size="1920x1080",
        fps=60,
        duration=4,
        request_id="req-all-fields",
        user_id="user-123456",
        style="anime",
        aspect_ratio="16:9",
        movement_amplitude="large",
        watermark_enabled=False,
        off_peak=True,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}],
)
async def test_missing_or_empty_bearer_key_is_401_code_1001(
    make_sim: MakeSim, headers: dict[str, str]
) -> None:
    client, _ = await make_sim()
    for response in (await submit(client, headers=headers), await poll(client, "1", headers)):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "1001"


async def test_invalid_key_is_401_code_1002(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    response = await submit(client, headers={"Authorization": "Bearer invalid-key"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "1002"


async def test_unknown_model_is_400_code_1211(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    response = await submit(client, model="sora-2")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "1211"


async def test_submit_without_prompt_or_image_is_400_code_1214(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    response = await submit(client, prompt=None)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "1214", "message": "prompt or image_url is required"}
    }


@pytest.mark.parametrize(
    "bad", [{"fps": "30"}, {"quality": "best"}, {"request_id": "short"}, {"image_url": []}]
)
async def test_malformed_field_is_400_code_1214(make_sim: MakeSim, bad: dict[str, Any]) -> None:
    client, _ = await make_sim()
    response = await submit(client, **bad)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "1214"


async def test_duplicate_request_id_is_400_code_1231_and_counted(make_sim: MakeSim) -> None:
    # Given a submit that was accepted
    client, _ = await make_sim()
    assert (await submit(client, request_id="req-dup-1")).status_code == 200
    # When the same request_id is submitted again
    again = await submit(client, request_id="req-dup-1")
    # Then it is refused like real Zhipu does, and nothing new is created
    assert again.status_code == 400
    assert again.json() == {"error": {"code": "1231", "message": "duplicate request"}}
    counters = await stats(client)
    assert counters["duplicate_request_ids"] == 1
    assert counters["submissions"] == 1
    assert counters["request_ids"] == {"req-dup-1": 1}


async def test_submit_over_concurrency_limit_is_429_until_a_task_finishes(
    make_sim: MakeSim,
) -> None:
    # Given a key with its two slots taken
    client, clock = await make_sim(concurrency_limit=2)
    for _ in range(2):
        assert (await submit(client)).status_code == 200
    # When a third task is submitted on that key, and one on another key
    third = await submit(client)
    other_key = await submit(client, headers=KEY_B)
    # Then only the over-limit key is refused, and it is accepted once its tasks finish
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "1302"
    assert other_key.status_code == 200
    assert (await stats(client))["rate_limited_429"] == 1
    clock.advance(1)
    assert (await submit(client)).status_code == 200


async def test_in_flight_and_max_in_flight_are_tracked_per_key(make_sim: MakeSim) -> None:
    client, clock = await make_sim()
    for _ in range(3):
        await submit(client)
    await submit(client, headers=KEY_B)
    clock.advance(1)
    await submit(client)
    counters = await stats(client)
    assert counters["submissions"] == 5
    assert counters["submissions_by_key"] == {"key-a": 4, "key-b": 1}
    assert counters["in_flight_by_key"] == {"key-a": 1, "key-b": 0}
    assert counters["max_in_flight_by_key"] == {"key-a": 3, "key-b": 1}


async def test_injected_submit_error_is_500_and_creates_nothing(make_sim: MakeSim) -> None:
    # Given a provider whose submits all fail with 500
    client, _ = await make_sim(submit_error_rate=1.0)
    failed = await submit(client, request_id="req-retry-1")
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "500"
    # When the fault clears and the client retries with the same request_id
    await client.post("/_sim/options", json={"submit_error_rate": 0.0})
    retried = await submit(client, request_id="req-retry-1")
    # Then the retry is accepted: the 500 left no trace
    assert retried.status_code == 200
    assert (await stats(client))["request_ids"] == {"req-retry-1": 1}


# --- poll -----------------------------------------------------------------------------------


async def test_poll_is_processing_until_finish_time_then_success_with_urls(
    make_sim: MakeSim,
) -> None:
    client, clock = await make_sim(gen_time_s=2.0)
    task_id = (await submit(client, request_id="req-poll-1")).json()["id"]
    clock.advance(1.9)
    assert (await poll(client, task_id)).json() == {
        "model": "cogvideox-3",
        "request_id": "req-poll-1",
        "task_status": "PROCESSING",
    }
    clock.advance(0.2)
    body = (await poll(client, task_id)).json()
    assert body["task_status"] == "SUCCESS"
    assert set(body) == {"model", "request_id", "task_status", "video_result"}
    [result] = body["video_result"]
    expires = math.ceil(clock.wall + 3600)
    assert result == {
        "url": f"http://sim.test/files/{task_id}/video.mp4?expires={expires}",
        "cover_image_url": f"http://sim.test/files/{task_id}/cover.png?expires={expires}",
    }
    assert (await stats(client))["polls"] == 2


async def test_failed_task_polls_fail_without_result_or_detail(make_sim: MakeSim) -> None:
    client, clock = await make_sim(fail_rate=1.0)
    task_id = (await submit(client, request_id="req-fail-1")).json()["id"]
    clock.advance(1)
    assert (await poll(client, task_id)).json() == {
        "model": "cogvideox-3",
        "request_id": "req-fail-1",
        "task_status": "FAIL",
    }


async def test_poll_of_unknown_task_is_404_with_error_envelope(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    response = await poll(client, "123456789")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message"}
    assert isinstance(response.json()["error"]["code"], str)


async def test_injected_poll_error_is_500_and_still_counted(make_sim: MakeSim) -> None:
    client, _ = await make_sim(poll_error_rate=1.0)
    task_id = (await submit(client)).json()["id"]
    response = await poll(client, task_id)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "500"
    assert (await stats(client))["polls"] == 1


# --- media ----------------------------------------------------------------------------------


async def test_video_is_an_mp4_of_exactly_the_configured_size(make_sim: MakeSim) -> None:
    (client, _), _, body = await finished_task(make_sim, video_bytes=300_000)
    response = await client.get(body["video_result"][0]["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == "300000"
    data = response.content
    assert len(data) == 300_000
    assert data[4:12] == b"ftypisom"
    # The playable sample (ftyp, moov, ffmpeg's free, mdat), then a free box up to the size
    assert [kind for kind, _ in mp4_boxes(data)] == [b"ftyp", b"moov", b"free", b"mdat", b"free"]
    assert data.startswith(sample_mp4())
    assert data[44:48] == b"mvhd"
    assert (await stats(client))["downloads"] == 1


def test_videos_differ_per_task_and_small_ones_keep_the_header_only_layout() -> None:
    first, second = (b"".join(video_chunks(task, 20_000)) for task in ("a", "b"))
    assert first != second
    assert first[: len(sample_mp4())] == second[: len(sample_mp4())]
    small = b"".join(video_chunks("a", len(sample_mp4()) + 7))
    assert [kind for kind, _ in mp4_boxes(small)] == [b"ftyp", b"moov", b"mdat"]


async def test_video_size_is_fixed_when_the_task_is_created(make_sim: MakeSim) -> None:
    client, clock = await make_sim(video_bytes=5000)
    task_id = (await submit(client)).json()["id"]
    await client.post("/_sim/options", json={"video_bytes": 9000})
    clock.advance(1)
    url = (await poll(client, task_id)).json()["video_result"][0]["url"]
    assert len((await client.get(url)).content) == 5000


async def test_sha256_endpoint_equals_hash_of_downloaded_media(make_sim: MakeSim) -> None:
    (client, _), task_id, body = await finished_task(make_sim, video_bytes=200_000)
    [result] = body["video_result"]
    video = (await client.get(result["url"])).content
    cover = (await client.get(result["cover_image_url"])).content
    hashes = (await client.get(f"/_sim/tasks/{task_id}/sha256")).json()
    assert hashes == {
        "video": hashlib.sha256(video).hexdigest(),
        "cover": hashlib.sha256(cover).hexdigest(),
        "video_size": 200_000,
    }


async def test_media_is_deterministic_per_task_id(make_sim: MakeSim) -> None:
    # Same seed, same ids, same bytes: a reproducible sha256 across runs.
    (first, _), id_1, _ = await finished_task(make_sim)
    (second, _), id_2, _ = await finished_task(make_sim)
    assert id_1 == id_2
    hash_1 = (await first.get(f"/_sim/tasks/{id_1}/sha256")).json()
    hash_2 = (await second.get(f"/_sim/tasks/{id_2}/sha256")).json()
    assert hash_1 == hash_2


async def test_cover_and_demo_image_are_valid_pngs(make_sim: MakeSim) -> None:
    (client, _), _, body = await finished_task(make_sim)
    cover = await client.get(body["video_result"][0]["cover_image_url"])
    demo = await client.get("/_sim/image.png")
    for response in (cover, demo):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert_valid_png(response.content)


async def test_result_url_is_403_after_its_ttl(make_sim: MakeSim) -> None:
    # Given a URL handed out by a poll, with a 60 s lifetime
    (client, clock), _, body = await finished_task(make_sim, url_ttl_s=60)
    url = body["video_result"][0]["url"]
    clock.advance(59)
    assert (await client.get(url)).status_code == 200
    # When its lifetime has passed
    clock.advance(2)
    # Then it is refused, while a fresh poll hands out a working URL
    assert (await client.get(url)).status_code == 403
    assert (await stats(client))["expired_url_403"] == 1


async def test_media_without_expiry_is_403_and_unknown_or_unfinished_is_404(
    make_sim: MakeSim,
) -> None:
    (client, clock), task_id, _ = await finished_task(make_sim)
    running_id = (await submit(client)).json()["id"]
    later = int(clock.wall) + 100
    assert (await client.get(f"/files/{task_id}/video.mp4")).status_code == 403
    assert (await client.get(f"/files/{task_id}/video.mp4?expires=soon")).status_code == 403
    assert (await client.get(f"/files/999/video.mp4?expires={later}")).status_code == 404
    assert (await client.get(f"/files/{running_id}/video.mp4?expires={later}")).status_code == 404


def test_video_is_generated_in_bounded_chunks() -> None:
    size = 10 * 1024 * 1024 + 7
    lengths = [len(chunk) for chunk in video_chunks("42", size)]
    assert sum(lengths) == size
    assert max(lengths) <= CHUNK_BYTES


# --- control API ----------------------------------------------------------------------------


async def test_options_update_is_partial_and_validated(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    updated = await client.post("/_sim/options", json={"fail_rate": 0.25, "video_bytes": 4096})
    assert updated.status_code == 200
    assert updated.json()["fail_rate"] == 0.25
    assert updated.json()["gen_time_s"] == 0.05
    rejected = await client.post("/_sim/options", json={"fail_rate": 2, "gen_time_s": 9})
    assert rejected.status_code == 422
    assert (await client.post("/_sim/options", json={"no_such": 1})).status_code == 422
    assert (await client.get("/_sim/options")).json() == updated.json()


async def test_reset_clears_tasks_and_counters_but_keeps_options(make_sim: MakeSim) -> None:
    client, _ = await make_sim(concurrency_limit=3)
    task_id = (await submit(client, request_id="req-reset-1")).json()["id"]
    await client.post("/_sim/reset")
    counters = await stats(client)
    assert counters["submissions"] == 0
    assert counters["request_ids"] == {}
    assert (await poll(client, task_id)).status_code == 404
    assert (await submit(client, request_id="req-reset-1")).status_code == 200
    assert (await client.get("/_sim/options")).json()["concurrency_limit"] == 3


async def test_healthz_answers_ok(make_sim: MakeSim) -> None:
    client, _ = await make_sim()
    assert (await client.get("/healthz")).json() == {"status": "ok"}


# --- CLI and a real server ------------------------------------------------------------------


def test_cli_has_one_flag_per_option() -> None:
    host, port, options = cli.parse_args(
        ["--port", "9999", "--fail-rate", "0.3", "--concurrency-limit", "2", "--seed", "7"]
    )
    assert (host, port) == ("127.0.0.1", 9999)
    assert options == SimOptions(fail_rate=0.3, concurrency_limit=2, seed=7)


def test_cli_rejects_an_invalid_option_value() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--fail-rate", "1.5"])


def test_real_server_generates_then_streams_a_large_video() -> None:
    size = 12 * 1024 * 1024
    app = create_app(SimOptions(gen_time_s=0.05, gen_jitter_s=0.01, video_bytes=size))
    with serving(app) as base, httpx.Client(base_url=base, headers=KEY_A) as client:
        task_id = client.post(
            f"{ZHIPU}/videos/generations", json={"model": "cogvideox-flash", "prompt": "p"}
        ).json()["id"]
        deadline = time.monotonic() + 5
        while (body := client.get(f"{ZHIPU}/async-result/{task_id}").json())[
            "task_status"
        ] == "PROCESSING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert body["task_status"] == "SUCCESS"
        digest, received = hashlib.sha256(), 0
        with client.stream("GET", body["video_result"][0]["url"]) as response:
            assert response.headers["content-length"] == str(size)
            for chunk in response.iter_bytes():
                digest.update(chunk)
                received += len(chunk)
        assert received == size
        expected = client.get(f"/_sim/tasks/{task_id}/sha256").json()["video"]
        assert digest.hexdigest() == expected
