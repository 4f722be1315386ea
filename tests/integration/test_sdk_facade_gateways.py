"""The OpenAI facade as a drop-in for typed clients and gateways: the official ``openai`` SDK
(including its ``extra_body``), and the bodies LiteLLM and new-api send, as raw httpx.

- ``seconds`` and ``size`` are never null: the request's, else the provider's defaults.
- Every error is OpenAI's ``{"error": {"message", "type", "param", "code"}}``; 401 is
  ``invalid_api_key``, a too-large body or image a 413 in that shape.
- ``user``, ``metadata`` (LiteLLM, the SDK) become the job's labels; new-api's ``duration`` and
  ``image`` its duration and image; a refusal names the parameter the request used.

Jobs here only need creating: they run in process (``in_process_api``, no worker), on the live
stack's Redis and S3; the 413s go through the live API (a real socket).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from simulator.media import cover_png
from tests.support.api import in_process_api
from tests.support.live import API_TOKEN, LiveStack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPENAI_ERROR = {"message", "type", "param", "code"}
AUTH = {"authorization": "Bearer token-a"}


@pytest.fixture
def app(live: LiveStack) -> Iterator[TestClient]:
    with in_process_api(live) as (client, _):
        yield client


@pytest.fixture
def sdk(app: TestClient) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key="token-a", http_client=app)


def _spec(app: TestClient, video_id: str) -> dict[str, Any]:
    answer = app.get(f"/v1/jobs/{video_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    spec: dict[str, Any] = answer.json()["spec"]
    return spec


def _error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == OPENAI_ERROR
    return error


# -- seconds and size are never null -----------------------------------------------------------


def test_seconds_and_size_come_from_the_providers_defaults(sdk: OpenAI, app: TestClient) -> None:
    video = sdk.videos.create(model="cogvideox-flash", prompt="a slow tide")
    assert (video.seconds, video.size) == ("5", "1920x1080")  # CogVideoX's defaults
    assert "duration" not in _spec(app, video.id)  # nothing extra is sent to the provider
    retrieved = sdk.videos.retrieve(video.id)
    assert (retrieved.seconds, retrieved.size) == ("5", "1920x1080")
    [listed] = sdk.videos.list().data
    assert (listed.seconds, listed.size) == ("5", "1920x1080")
    asked = sdk.videos.create(model="cogvideox-3", prompt="p", seconds="10", size="1280x720")  # type: ignore[arg-type]
    assert (asked.seconds, asked.size) == ("10", "1280x720")
    raw = app.get(f"/v1/videos/{video.id}", headers=AUTH).json()
    assert raw["seconds"] == "5" and raw["size"] == "1920x1080"


# -- OpenAI's errors ---------------------------------------------------------------------------


def test_a_bad_token_is_invalid_api_key_and_a_missing_one_has_no_code(app: TestClient) -> None:
    for headers in ({"authorization": "Bearer wrong"}, {"authorization": "wrong"}):
        error = _error(app.get("/v1/videos", headers=headers), 401)
        assert (error["code"], error["type"], error["param"]) == (
            "invalid_api_key",
            "invalid_request_error",
            None,
        )
        assert error["message"].startswith("Incorrect API key provided")
    # As OpenAI answers a request without a key: the same type, a null code, its own message
    error = _error(app.get("/v1/videos"), 401)
    assert (error["code"], error["type"], error["param"]) == (None, "invalid_request_error", None)
    assert error["message"].startswith("You didn't provide an API key")
    # The jobs surface keeps one code for both, with a message saying which
    missing = app.get("/v1/jobs").json()["error"]
    wrong = app.get("/v1/jobs", headers={"authorization": "Bearer wrong"}).json()["error"]
    assert missing["code"] == wrong["code"] == "unauthorized"
    assert "no token was sent" in missing["message"] and missing["message"] != wrong["message"]
    stranger = OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=app)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.videos.create(model="cogvideox-flash", prompt="p")
    assert refused.value.code == "invalid_api_key"


def test_too_large_is_an_openai_413_through_the_sdk_and_on_the_socket(live: LiveStack) -> None:
    sdk = OpenAI(base_url=f"{live.api_url}/v1", api_key=API_TOKEN, max_retries=0)
    image = cover_png("frame") + b"\0" * (6 * 1024 * 1024)  # over the 5 MB image limit
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.videos.create(
            model="cogvideox-3", prompt="p", input_reference=("f.png", image, "image/png")
        )
    error = caught.value
    assert error.status_code == 413
    assert (error.code, error.type, error.param) == (
        "request_too_large",
        "invalid_request_error",
        "input_reference",
    )
    # Bodies over the 8 MiB request limit: still answers in OpenAI's shape, not resets
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.videos.create(
            model="cogvideox-3", prompt="p", input_reference=("f.png", image * 2, "image/png")
        )
    assert (caught.value.status_code, caught.value.code) == (413, "request_too_large")
    huge = {"prompt": "p", "model": "cogvideox-3", "pad": "x" * (9 * 1024 * 1024)}
    answer = httpx.post(
        f"{live.api_url}/v1/videos",
        content=json.dumps(huge),
        headers={"authorization": f"Bearer {API_TOKEN}", "content-type": "application/json"},
        timeout=30,
    )
    assert _error(answer, 413)["code"] == "request_too_large"


def test_other_statuses_keep_openais_shape(app: TestClient) -> None:
    assert _error(app.get("/v1/videos/nope", headers=AUTH), 404)["param"] == "video_id"
    assert _error(app.put("/v1/videos", headers=AUTH), 405)["type"] == "invalid_request_error"
    bad_limit = _error(app.get("/v1/videos", params={"limit": 0}, headers=AUTH), 400)
    assert bad_limit["param"] == "limit"
    missing = _error(app.post("/v1/videos", json={"model": "cogvideox-3"}, headers=AUTH), 400)
    assert (missing["code"], missing["param"]) == ("missing_required_parameter", "prompt")


# -- what gateways send ------------------------------------------------------------------------


def test_sdk_user_and_metadata_become_labels(sdk: OpenAI, app: TestClient) -> None:
    video = sdk.videos.create(
        model="cogvideox-flash",
        prompt="a kite",
        extra_body={"user": "end-user-7", "metadata": {"team": "growth", "run": "42"}},
    )  # multipart: metadata[team]=growth, metadata[run]=42
    assert _spec(app, video.id)["labels"] == {"team": "growth", "run": "42", "user": "end-user-7"}


def test_litellm_style_form_with_user_and_json_metadata(app: TestClient) -> None:
    form = {
        "model": "cogvideox-3",
        "prompt": "a lantern",
        "seconds": "5",
        "size": "1280x720",
        "user": "litellm-user",
        "metadata": json.dumps({"trace_id": "t-1", "tags": ["a", "b"]}),
    }
    files = {"input_reference": ("frame.png", cover_png("frame"), "image/png")}
    made = app.post("/v1/videos", data=form, files=files, headers=AUTH)
    assert made.status_code == 200, made.text
    assert (made.json()["seconds"], made.json()["size"]) == ("5", "1280x720")
    spec = _spec(app, made.json()["id"])
    assert spec["labels"] == {"trace_id": "t-1", "tags": '["a","b"]', "user": "litellm-user"}
    assert str(spec["image"]).startswith("upload:")


def test_new_api_style_json_with_duration_and_image(app: TestClient) -> None:
    body = {
        "model": "cogvideox-3",
        "prompt": "a harbour at dawn",
        "duration": 10,
        "image": "https://example.com/first.png",
        "metadata": {"channel": "7"},
    }
    made = app.post("/v1/videos", json=body, headers=AUTH)
    assert made.status_code == 200, made.text
    assert made.json()["seconds"] == "10"
    spec = _spec(app, made.json()["id"])
    assert (spec["duration"], spec["image"]) == (10, "https://example.com/first.png")
    assert spec["labels"] == {"channel": "7"}
    # new-api also takes bare base64: it becomes a data: URI of the image's type
    bare = base64.b64encode(cover_png("frame")).decode()
    made = app.post(
        "/v1/videos", json={"model": "cogvideox-3", "prompt": "p", "image": bare}, headers=AUTH
    )
    assert made.status_code == 200, made.text
    assert _spec(app, made.json()["id"])["image"] == f"data:image/png;base64,{bare}"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"duration": 7}, "duration"),  # new-api's name: the refusal names it
        ({"seconds": "7"}, "seconds"),
        ({"duration": "soon"}, "duration"),
        ({"image": "not an image"}, "image"),
        ({"image": "ftp://example.com/x.png"}, "image"),
        ({"metadata": {"k": "v" * 300}}, "metadata"),
        ({"metadata": "[1, 2]"}, "metadata"),
        ({"user": 7}, "user"),
        (
            {
                "image": "https://e.com/a.png",
                "input_reference": {"image_url": "https://e.com/b.png"},
            },
            "image",
        ),
    ],
)
def test_refusals_name_the_parameter_the_request_used(
    app: TestClient, body: dict[str, Any], param: str
) -> None:
    answer = app.post(
        "/v1/videos", json={"model": "cogvideox-3", "prompt": "p", **body}, headers=AUTH
    )
    error = _error(answer, 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_unknown_parameters_are_still_refused(app: TestClient) -> None:
    answer = app.post(
        "/v1/videos", json={"model": "cogvideox-3", "prompt": "p", "remix_of": "v"}, headers=AUTH
    )
    assert _error(answer, 400)["code"] == "unknown_parameter"
