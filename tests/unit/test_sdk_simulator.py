"""The simulator driven by the vendors' official SDKs, so what the tests send is what real
clients send (zai-sdk for Zhipu, the Volcengine Ark runtime for Ark, openai for Sora).

The SDKs send every parameter a caller leaves out as an explicit ``null`` (zai, Ark); each
test records the bodies on the wire and checks they really held nulls, then that the simulator
took them as "unset" (docs/wire-formats.md §1, §4), as the real services do. The simulator runs
under uvicorn on a loopback port with a short generation time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import zai
from fastapi import FastAPI
from openai import OpenAI
from volcenginesdkarkruntime import Ark
from volcenginesdkarkruntime._exceptions import ArkAPIError
from zai import ZhipuAiClient

from simulator.app import create_app
from simulator.options import SimOptions
from tests.support.sim import ZHIPU, serving

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "key-a"
ARK_MODEL = "doubao-seedance-1-0-pro-250528"
Bodies = list[dict[str, Any]]


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(SimOptions(gen_time_s=0.2, gen_jitter_s=0.0, seed=1))


@pytest.fixture(scope="module")
def sim(app: FastAPI) -> Iterator[str]:
    with serving(app) as base:
        yield base


@pytest.fixture
def sent() -> Bodies:
    """The JSON bodies the SDK under test sent (filled by ``recording``)."""
    return []


def recording(sent: Bodies) -> httpx.Client:
    """An httpx client for an SDK that keeps each JSON request body it sends in ``sent``."""

    def keep(request: httpx.Request) -> None:
        if request.headers.get("content-type", "").startswith("application/json"):
            sent.append(json.loads(request.read() or b"null"))

    return httpx.Client(event_hooks={"request": [keep]}, timeout=10)


def until(done: Callable[[], Any], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := done()):
        assert time.monotonic() < deadline, "the task never finished"
        time.sleep(0.05)
    return found


# -- Zhipu, through zai-sdk ---------------------------------------------------------------------


def _zai(sim: str, sent: Bodies, key: str = KEY) -> ZhipuAiClient:
    return ZhipuAiClient(
        api_key=key, base_url=f"{sim}{ZHIPU}", http_client=recording(sent), max_retries=0
    )


def test_zai_sdk_text_to_video_with_nulls_for_unset_fields(sim: str, sent: Bodies) -> None:
    client = _zai(sim, sent)
    task = client.videos.generations(model="cogvideox-3", prompt="a paper boat", duration=5)
    [body] = sent
    unset = {name for name, value in body.items() if value is None}
    assert {"quality", "with_audio", "fps", "size", "image_url"} <= unset  # what zai sends
    assert task.id and task.task_status == "PROCESSING"
    done = until(
        lambda: (
            (r := client.videos.retrieve_videos_result(id=task.id)).task_status != "PROCESSING"
            and r
        )
    )
    assert done.task_status == "SUCCESS" and done.video_result
    video = httpx.get(done.video_result[0].url, timeout=10)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"


def test_zai_sdk_image_to_video_and_its_options(app: FastAPI, sim: str, sent: Bodies) -> None:
    client = _zai(sim, sent)
    task = client.videos.generations(
        model="cogvideox-3",
        image_url="https://example.com/frame.png",
        quality="quality",
        with_audio=True,
        size="1920x1080",
        fps=60,
        request_id="req-sdk-0001",
        user_id="user-000001",
    )
    assert task.request_id == "req-sdk-0001"
    kept = app.state.registry.get(task.id).params
    assert (kept["fps"], kept["quality"], kept["with_audio"], kept["size"]) == (
        60,
        "quality",
        True,
        "1920x1080",
    )
    assert "duration" not in kept  # sent as null: unset, Zhipu's default applies


def test_zai_sdk_errors_arrive_as_its_exceptions(sim: str, sent: Bodies) -> None:
    with pytest.raises(zai.core.APIRequestFailedError) as bad:
        _zai(sim, sent).videos.generations(model="cogvideox-3", prompt="p", fps=45)
    assert bad.value.status_code == 400 and "1214" in str(bad.value)
    with pytest.raises(zai.core.APIRequestFailedError) as unknown:
        _zai(sim, sent).videos.generations(model="cogvideox-9", prompt="p")
    assert "1211" in str(unknown.value)
    with pytest.raises(zai.core.APIAuthenticationError):
        _zai(sim, sent, key="invalid-key").videos.generations(model="cogvideox-3", prompt="p")


# -- Ark, through the Volcengine Ark runtime ---------------------------------------------------


def _ark(sim: str, sent: Bodies, key: str = KEY) -> Ark:
    return Ark(
        base_url=f"{sim}/ark/api/v3", api_key=key, http_client=recording(sent), max_retries=0
    )


def test_ark_sdk_creates_polls_and_deletes_a_task(sim: str, sent: Bodies) -> None:
    client = _ark(sim, sent)
    created = client.content_generation.tasks.create(
        model=ARK_MODEL,
        content=[
            {"type": "text", "text": "a paper boat on a canal"},
            {"type": "image_url", "image_url": {"url": "https://example.com/f.png"}},
        ],
        return_last_frame=True,
    )
    [body] = sent
    unset = {name for name, value in body.items() if value is None}
    assert {"duration", "ratio", "resolution", "seed", "callback_url"} <= unset  # Ark's SDK
    assert created.id.startswith("cgt-")
    done = until(
        lambda: (
            (t := client.content_generation.tasks.get(task_id=created.id)).status
            in ("succeeded", "failed")
            and t
        )
    )
    assert done.status == "succeeded"
    assert done.content.video_url and done.content.last_frame_url
    assert (done.duration, done.resolution, done.ratio) == (5, "720p", "16:9")  # the defaults
    client.content_generation.tasks.delete(task_id=created.id)
    with pytest.raises(ArkAPIError) as gone:
        client.content_generation.tasks.get(task_id=created.id)
    assert getattr(gone.value, "status_code", 404) == 404


def test_ark_sdk_bad_input_still_refused_by_ark_rules(sim: str, sent: Bodies) -> None:
    client = _ark(sim, sent)
    with pytest.raises(ArkAPIError) as bad:
        client.content_generation.tasks.create(
            model=ARK_MODEL, content=[{"type": "text", "text": "p"}], duration=30
        )
    assert getattr(bad.value, "code", None) == "InvalidParameter"
    with pytest.raises(ArkAPIError) as missing:
        client.content_generation.tasks.create(model=ARK_MODEL, content=[])
    assert getattr(missing.value, "status_code", None) == 400


# -- OpenAI (Sora), through the openai SDK -----------------------------------------------------


def test_openai_sdk_creates_polls_and_downloads_a_video(sim: str) -> None:
    client = OpenAI(base_url=f"{sim}/openai/v1", api_key=KEY, max_retries=0)
    video = client.videos.create(model="sora-2", prompt="a paper boat")
    assert (video.seconds, video.size) == ("4", "720x1280")  # Sora's defaults, never null
    done = client.videos.poll(video.id, poll_interval_ms=50)
    assert done.status == "completed" and done.completed_at is not None
    content = client.videos.download_content(done.id)
    assert content.response.headers["content-type"] == "video/mp4" and content.content
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(model="sora-2", prompt="p", seconds="5")  # type: ignore[arg-type]
    assert bad.value.param == "seconds"
    with pytest.raises(openai.AuthenticationError) as refused:
        OpenAI(base_url=f"{sim}/openai/v1", api_key="invalid-key").videos.retrieve("video_x")
    assert refused.value.code == "invalid_api_key"


def test_openai_json_nulls_are_unset_too(sim: str) -> None:
    body = {"model": "sora-2", "prompt": "p", "seconds": None, "size": None}
    made = httpx.post(
        f"{sim}/openai/v1/videos", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert made.status_code == 200, made.text
    assert (made.json()["seconds"], made.json()["size"]) == ("4", "720x1280")
