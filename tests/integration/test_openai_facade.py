"""The OpenAI-compatible facade, driven by the official ``openai`` package pointed at vidqueue.

The provider behind it is Zhipu (the test providers file lists ``models`` for ``zhipu``), so
``seconds`` and ``size`` follow CogVideoX's rules. Jobs that must stay unfinished run in process
on an idle Redis database (``in_process_api``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from simulator.media import cover_png
from tests.support.api import in_process_api
from tests.support.live import API_TOKEN, LiveStack

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OPENAI_ERROR = {"message", "type", "param", "code"}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def sdk(live: LiveStack) -> OpenAI:
    return OpenAI(base_url=f"{live.api_url}/v1", api_key=API_TOKEN, max_retries=0)


@pytest.fixture
def local_sdk(live: LiveStack) -> Iterator[OpenAI]:
    """The SDK on the in-process app (no worker: videos stay queued), as producer token-a."""
    with in_process_api(live) as (app, _):
        yield OpenAI(base_url="http://testserver/v1", api_key="token-a", http_client=app)


def test_the_sdk_creates_polls_downloads_lists_and_deletes_a_video(
    idle_stack: LiveStack, sdk: OpenAI
) -> None:
    live = idle_stack
    # Create: multipart, as the SDK always sends it
    video = sdk.videos.create(
        model="cogvideox-3",
        prompt="a paper boat on a canal",
        seconds="5",  # type: ignore[arg-type]
        size="1280x720",  # type: ignore[arg-type]
    )
    assert video.object == "video" and video.model == "cogvideox-3"
    assert video.status in ("queued", "in_progress")
    assert (video.seconds, video.size, video.prompt) == ("5", "1280x720", "a paper boat on a canal")
    record = live.client.get(video.id)
    assert record is not None and record.provider == "zhipu" and record.spec["duration"] == 5
    # Poll to completed (the SDK's own poller, which reads openai-poll-after-ms)
    done = sdk.videos.poll(video.id, poll_interval_ms=200)
    assert done.status == "completed" and done.progress == 100 and done.error is None
    assert done.completed_at is not None and done.completed_at >= done.created_at
    assert done.expires_at is not None and done.expires_at > done.completed_at
    # Download: the mirrored file's bytes, video and thumbnail
    mirrored = live.client.get(video.id)
    assert mirrored is not None and mirrored.result is not None
    content = sdk.videos.download_content(video.id)
    assert hashlib.sha256(content.content).hexdigest() == mirrored.result["video"]["sha256"]
    thumbnail = sdk.videos.download_content(video.id, variant="thumbnail").content
    assert thumbnail.startswith(PNG_MAGIC)
    # List: newest first, the SDK's cursor paging (after=last_id) works
    assert sdk.videos.list(limit=1).data[0].id == video.id
    listed = [v.id for _, v in zip(range(4), sdk.videos.list(limit=1), strict=False)]
    assert listed[0] == video.id and len(set(listed)) == len(listed)
    # Delete: the record and the mirrored files are gone
    deleted = sdk.videos.delete(video.id)
    assert deleted.id == video.id and deleted.object == "video.deleted"  # type: ignore[comparison-overlap]
    assert getattr(deleted, "deleted", None) is True
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    gone = httpx.get(mirrored.result["video"]["url"], timeout=10)
    assert gone.status_code == 404


def test_an_input_reference_file_becomes_the_jobs_image(idle_stack: LiveStack, sdk: OpenAI) -> None:
    live = idle_stack
    video = sdk.videos.create(
        model="cogvideox-3",
        prompt="the boat drifts away",
        input_reference=("frame.png", cover_png("frame"), "image/png"),
    )
    record = live.client.get(video.id)
    assert record is not None and str(record.spec["image"]).startswith("upload:")
    assert sdk.videos.poll(video.id, poll_interval_ms=200).status == "completed"


def test_a_json_create_takes_an_image_url_reference(live: LiveStack) -> None:
    image = "https://example.com/first-frame.png"
    answer = httpx.post(
        f"{live.api_url}/v1/videos",
        json={
            "prompt": "a kite",
            "model": "cogvideox-flash",
            "input_reference": {"image_url": image},
        },
        headers={"authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["openai-poll-after-ms"] == "1000"
    record = live.client.get(answer.json()["id"])
    assert record is not None and record.spec["image"] == image


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"model": "sora-9"}, "model", "model_not_found"),
        ({"model": "cogvideox-3", "seconds": "4"}, "seconds", "invalid_value"),
        ({"model": "cogvideox-3", "size": "720x720"}, "size", "invalid_value"),
        ({"model": "cogvideox-flash", "size": "1280x720"}, "size", "invalid_value"),
        ({"model": "cogvideox-3", "seconds": "five"}, "seconds", "invalid_value"),
        (
            {"model": "cogvideox-3", "input_reference": ("x.gif", b"GIF89a", "image/gif")},
            "input_reference",
            "invalid_value",
        ),
        (
            {"model": "cogvideox-3", "extra_body": {"remix_of": "v"}},
            "remix_of",
            "unknown_parameter",
        ),
    ],
)
def test_bad_parameters_are_openai_style_400s_naming_the_parameter(
    sdk: OpenAI, kwargs: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(prompt="a kite", **kwargs)
    error = caught.value
    assert (error.param, error.code, error.type) == (param, code, "invalid_request_error")
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}


def test_auth_and_unknown_ids_answer_like_openai(live: LiveStack, sdk: OpenAI) -> None:
    stranger = OpenAI(base_url=f"{live.api_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.videos.list()
    assert (refused.value.code, refused.value.type) == ("invalid_api_key", "invalid_request_error")
    assert isinstance(refused.value.body, dict) and set(refused.value.body) == OPENAI_ERROR
    bare = httpx.post(f"{live.api_url}/v1/videos", json={"prompt": "p"}, timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["code"] is None  # as OpenAI: no key
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.videos.retrieve("no-such-video")
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        sdk.videos.download_content("no-such-video")


def test_an_unfinished_video_has_no_content_and_delete_cancels_it(local_sdk: OpenAI) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video = local_sdk.videos.create(model="cogvideox-flash", prompt="a slow tide")
    assert video.status == "queued" and video.progress == 0
    with pytest.raises(openai.BadRequestError) as caught:
        local_sdk.videos.download_content(video.id)
    assert caught.value.code == "video_not_ready"
    # Delete on an unfinished video cancels it; it then reads as failed/cancelled
    first = local_sdk.videos.delete(video.id)
    assert getattr(first, "deleted", None) is False
    cancelled = local_sdk.videos.retrieve(video.id)
    assert cancelled.status == "failed" and cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    # Deleting the finished (cancelled) video removes it
    assert getattr(local_sdk.videos.delete(video.id), "deleted", None) is True
    with pytest.raises(openai.NotFoundError):
        local_sdk.videos.retrieve(video.id)


def test_listing_pages_by_after_in_either_order(local_sdk: OpenAI) -> None:
    ids = [
        local_sdk.videos.create(model="cogvideox-flash", prompt=f"shot {i}").id for i in range(5)
    ]
    newest = [v.id for v in local_sdk.videos.list(limit=2)]  # auto-paging: 3 requests
    assert newest == ids[::-1]
    first = local_sdk.videos.list(limit=2, order="asc")
    assert [v.id for v in first.data] == ids[:2] and first.has_more
    assert first.last_id == ids[1]
    rest = local_sdk.videos.list(limit=10, order="asc", after=ids[1])
    assert [v.id for v in rest.data] == ids[2:] and rest.has_more is False
    with pytest.raises(openai.BadRequestError) as caught:
        local_sdk.videos.list(after="not-a-video-of-mine")
    assert caught.value.param == "after"
