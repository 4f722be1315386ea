"""The OpenAI facade's field mapping, without a server: the defaults that fill ``seconds`` and
``size`` of the Video object, and the gateways' fields (``image``, ``metadata``, ``user``,
``duration``) as a job spec."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from producer import openai_videos
from producer.web import RouteError
from simulator.media import cover_png
from workers.domain.errors import InvalidSpec


@pytest.mark.parametrize(
    ("kind", "model", "spec", "expected"),
    [
        ("openai", "sora-2", {}, ("4", "720x1280")),
        ("openai", "sora-2", {"duration": 8, "size": "1280x720"}, ("8", "1280x720")),
        ("zhipu", "cogvideox-3", {}, ("5", "1920x1080")),
        ("zhipu", "vidu2-image", {}, ("4", "1920x1080")),
        ("gateway", "sora-2-pro", {}, ("4", "720x1280")),
        ("gateway", "kling-v1", {}, ("5", "1280x720")),
        ("kling", "kling-v1", {"options": {"aspect_ratio": "9:16"}}, ("5", "720x1280")),
        ("kling", "kling-v1", {"options": {"aspect_ratio": "1:1"}}, ("5", "720x720")),
        ("ark", "doubao-seedance-1-0-pro", {}, ("5", "1280x720")),
        (
            "ark",
            "doubao-seedance-1-0-pro",
            {"options": {"resolution": "1080p", "ratio": "9:16", "frames": 241}},
            ("10", "1080x1920"),
        ),
        ("ark", "doubao-seedance-1-0-pro", {"options": {"resolution": "480p"}}, ("5", "854x480")),
        ("", "unknown", {}, ("5", "1280x720")),
    ],
)
def test_defaults_are_never_null(
    kind: str, model: str, spec: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert openai_videos.defaults(kind, model, spec) == expected


def test_new_api_image_takes_urls_data_uris_and_bare_base64() -> None:
    png = base64.b64encode(cover_png("x")).decode()
    assert openai_videos.image_url("https://e.com/a.png") == "https://e.com/a.png"
    assert openai_videos.image_url(f"data:image/png;base64,{png}").startswith("data:image/png")
    assert openai_videos.image_url(png) == f"data:image/png;base64,{png}"
    for bad in ("", "ftp://e.com/a.png", base64.b64encode(b"GIF89a....").decode(), 7):
        with pytest.raises(RouteError) as caught:
            openai_videos.image_url(bad)
        assert (caught.value.status, caught.value.field) == (400, "image")


def test_metadata_and_user_become_labels() -> None:
    fields = {"metadata": {"a": "1", "n": 2, "tags": ["x"]}, "user": "u-1"}
    assert openai_videos.labels_of(fields) == {"a": "1", "n": "2", "tags": '["x"]', "user": "u-1"}
    assert openai_videos.labels_of({"metadata": '{"a": "1"}'}) == {"a": "1"}
    for bad in ({"metadata": "not json"}, {"metadata": [1]}, {"user": 3}):
        with pytest.raises(RouteError):
            openai_videos.labels_of(bad)
    with pytest.raises(RouteError):
        openai_videos.labels_of({"metadata": {str(i): "v" for i in range(17)}})


def test_a_refusal_names_the_parameter_the_request_used() -> None:
    names = {"duration": "duration", "labels": "user"}
    assert openai_videos.renamed(InvalidSpec("duration", "no"), names).field == "duration"
    assert openai_videos.renamed(InvalidSpec("duration", "no"), {}).field == "seconds"
    assert openai_videos.renamed(InvalidSpec("image.0", "no"), {}).field == "input_reference"
    assert openai_videos.renamed(InvalidSpec("labels", "no"), names).field == "user"
    assert openai_videos.renamed(InvalidSpec("size", "no"), names).code == "invalid_value"
