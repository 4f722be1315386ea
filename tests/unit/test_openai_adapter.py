"""OpenAI's (Sora 2) side of the adapter contract, and what only it does (docs/wire-formats.md §2).

The HTTP seam is an ``httpx.MockTransport`` answering §2's examples; the last section runs the
adapter against the in-process simulator. What every adapter does alike runs over ``CONTRACT`` in
tests/unit/test_adapter_contract.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
import pytest

from simulator.media import demo_png
from tests.support.adapter_contract import JOB_ID, PNG, PNG_URI, answer, simulated
from tests.support.contracts.openai import (
    COMPLETED,
    CONTRACT,
    IN_PROGRESS,
    JPEG,
    JPEG_URI,
    KEY,
)
from workers.domain.errors import PermanentError, RetryableError, SubmitOutcomeUnknown
from workers.domain.jobs import JobSpec, ProviderStatus

C = CONTRACT

# docs/wire-formats.md §2, verbatim: the Video object, then the poll examples built on it.
P, R = PermanentError, RetryableError


def spec(**fields: Any) -> JobSpec:
    return C.spec(**fields)


def multipart_parts(request: httpx.Request) -> dict[str, EmailMessage]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.content)
    assert isinstance(message, EmailMessage)
    return {
        part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
    }  # type: ignore[misc]


# --- submit: the request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"duration": 8, "size": "1280x720"}, {"seconds": "8", "size": "1280x720"}),
        ({}, {}),  # seconds and size left to OpenAI's defaults
        (
            {"image": "https://example.com/first.png", "duration": 4},
            {"seconds": "4", "input_reference": {"image_url": "https://example.com/first.png"}},
        ),
    ],
    ids=["seconds-as-a-string", "defaults", "image-url-as-input-reference"],
)
def test_without_an_uploaded_image_the_submit_is_json(fields: dict[str, Any], body: Any) -> None:
    request = C.submitted(spec(**fields))
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"prompt": "a cat", "model": "sora-2", **body}


@pytest.mark.parametrize(
    ("uri", "filename", "mime", "data"),
    [
        (PNG_URI, "input_reference.png", "image/png", PNG),
        (JPEG_URI, "input_reference.jpg", "image/jpeg", JPEG),
    ],
    ids=["png", "jpeg"],
)
def test_a_data_uri_image_is_uploaded_as_a_multipart_file_part(
    uri: str, filename: str, mime: str, data: bytes
) -> None:
    request = C.submitted(spec(image=uri, duration=12, size="720x1280"))
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(request)
    assert set(parts) == {"prompt", "model", "seconds", "size", "input_reference"}
    assert parts["seconds"].get_payload(decode=True) == b"12"
    assert parts["model"].get_payload(decode=True) == b"sora-2"
    file_part = parts["input_reference"]
    assert (file_part.get_filename(), file_part.get_content_type()) == (filename, mime)
    assert file_part.get_payload(decode=True) == data


def test_a_gateway_timeout_on_submit_is_an_unknown_outcome_but_on_poll_retryable() -> None:
    provider = C.provider(answer(504, None))
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit(JOB_ID, spec(), KEY)
    with pytest.raises(RetryableError):
        provider.poll(C.task, KEY)


# --- poll -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "progress"), [(IN_PROGRESS, 42.0), (COMPLETED, 100.0)])
def test_progress_is_reported(body: dict[str, Any], progress: float) -> None:
    assert C.provider(answer(200, body)).poll(C.task, KEY).progress == progress


@pytest.mark.parametrize(
    ("header", "wait_s"), [("1500", 1.5), (None, None), ("soon", None), ("-5", None), ("inf", None)]
)
def test_while_running_openai_poll_after_ms_is_the_hint(
    header: str | None, wait_s: float | None
) -> None:
    headers = {"openai-poll-after-ms": header} if header is not None else None
    result = C.provider(answer(200, IN_PROGRESS, headers)).poll(C.task, KEY)
    assert (result.poll_after_s, result.video_url) == (wait_s, None)


# --- against the simulator --------------------------------------------------------------------


@pytest.mark.parametrize("image", ["https://example.com/a.png", "png"], ids=["url", "upload"])
def test_images_go_through_the_simulator_and_the_content_needs_the_key(image: str) -> None:
    reference = (
        f"data:image/png;base64,{base64.b64encode(demo_png()).decode()}"
        if image == "png"
        else image
    )
    with simulated(C) as sim:
        job = spec(image=reference, duration=8, size="1280x720")
        task = sim.provider.submit(JOB_ID, job, KEY)
        first = sim.provider.poll(task, KEY)
        assert (first.status, first.progress, first.poll_after_s) == (
            ProviderStatus.QUEUED,
            0.0,
            2.0,
        )
        sim.clock.advance(5)
        assert sim.provider.poll(task, KEY).status is ProviderStatus.RUNNING
        sim.clock.advance(5)
        done = sim.provider.poll(task, KEY)
        assert done.video_url and done.cover_url
        expected = sim.client.get(f"/_sim/tasks/{task.id}/sha256").json()
        assert sim.client.get(done.video_url).status_code == 401
        for url, name in ((done.video_url, "video"), (done.cover_url, "cover")):
            got = sim.client.get(url, headers=sim.provider.download_headers(url, KEY))
            assert hashlib.sha256(got.content).hexdigest() == expected[name]


def test_the_simulated_content_expires_url_ttl_after_completion() -> None:
    with simulated(C) as sim:
        task = sim.provider.submit(JOB_ID, spec(), KEY)
        sim.clock.advance(10)
        url = sim.provider.poll(task, KEY).video_url
        assert url is not None
        sim.clock.advance(3601)
        assert (
            sim.client.get(url, headers=sim.provider.download_headers(url, KEY)).status_code == 404
        )
        assert sim.client.get("/_sim/stats").json()["expired_url_403"] == 1


def test_the_simulator_rejects_an_integer_seconds_like_openai() -> None:
    with simulated(C) as sim:
        body = {"prompt": "p", "model": "sora-2", "seconds": 8}
        reply = sim.client.post(
            "/openai/v1/videos", json=body, headers={"Authorization": "Bearer k"}
        )
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "seconds"
