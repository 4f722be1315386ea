"""Contract tests of the OpenAI (Sora 2) adapter against the wire format (docs/wire-formats.md §2).

The HTTP seam is an ``httpx.MockTransport`` answering the exact JSON examples of §2; the last
section runs the adapter against the simulator in-process (fake clock), to show both speak the
same wire format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from config.providers import ApiKey, ProviderConfig
from simulator.app import create_app
from simulator.media import demo_png
from simulator.options import SimOptions
from workers.domain import errors
from workers.domain.errors import (
    InvalidSpec,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers import build, validator
from workers.providers.base import ProviderTask
from workers.providers.openai import OpenAIProvider, under_base_url

BASE = "https://api.openai.com/v1"
KEY = ApiKey(id="OPENAI_API_KEY", secret="sk-proj-SECRET0123456789abcdef")
JOB_ID = "job-0f1e2d3c4b5a"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
JPEG_URI = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x01" * 16).decode()
# docs/wire-formats.md §2, verbatim: the Video object, then the poll examples built on it.
VIDEO: dict[str, Any] = {
    "id": "video_abc",
    "object": "video",
    "model": "sora-2",
    "status": "queued",
    "progress": 0,
    "created_at": 1760000000,
    "completed_at": None,
    "expires_at": None,
    "prompt": "…",
    "seconds": "4",
    "size": "720x1280",
    "remixed_from_video_id": None,
    "error": None,
}
IN_PROGRESS = VIDEO | {"status": "in_progress", "progress": 42}
COMPLETED = VIDEO | {
    "status": "completed",
    "progress": 100,
    "completed_at": 1760000300,
    "expires_at": 1760003900,
}
FAILED = VIDEO | {"status": "failed", "error": {"code": "moderation_blocked", "message": "…"}}
TASK = ProviderTask(id="video_abc")

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(base_url: str = BASE) -> ProviderConfig:
    return ProviderConfig(
        name="openai",
        kind="openai",
        base_url=base_url,
        api_key_env=["OPENAI_API_KEY"],
        request_timeout_s=12.5,
    )


def provider_answering(handler: Handler, sent: list[httpx.Request] | None = None) -> OpenAIProvider:
    def record(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return handler(request)

    return OpenAIProvider(make_config(), httpx.Client(transport=httpx.MockTransport(record)))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def raising(exc: httpx.TransportError) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**({"provider": "openai", "model": "sora-2", "prompt": "a cat"} | fields))


def submitted(job: JobSpec) -> httpx.Request:
    sent: list[httpx.Request] = []
    task = provider_answering(answer(200, VIDEO), sent).submit(JOB_ID, job, KEY)
    assert task == ProviderTask(id="video_abc")
    [request] = sent
    return request


def multipart_parts(request: httpx.Request) -> list[EmailMessage]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.content)
    assert isinstance(message, EmailMessage)
    return list(message.iter_parts())  # type: ignore[arg-type]


def error_body(code: str | None, message: str = "provider says no") -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


# --- submit: the exact request ----------------------------------------------------------------


def test_text_to_video_is_a_json_post_with_seconds_as_a_string() -> None:
    request = submitted(spec(duration=8, size="1280x720"))
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/videos"
    assert request.headers["authorization"] == f"Bearer {KEY.secret}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "prompt": "a cat",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
    }
    assert request.extensions["timeout"]["read"] == 12.5


def test_unset_seconds_and_size_are_left_to_openai_defaults() -> None:
    request = submitted(spec())
    assert json.loads(request.content) == {"prompt": "a cat", "model": "sora-2"}


def test_the_job_id_is_not_sent_since_openai_takes_no_idempotency_id() -> None:
    request = submitted(spec())
    assert JOB_ID.encode() not in request.content
    assert JOB_ID not in str(request.headers)


def test_an_image_url_is_sent_as_json_input_reference_image_url() -> None:
    request = submitted(spec(image="https://example.com/first.png", duration=4))
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "prompt": "a cat",
        "model": "sora-2",
        "seconds": "4",
        "input_reference": {"image_url": "https://example.com/first.png"},
    }


@pytest.mark.parametrize(
    ("uri", "filename", "mime", "data"),
    [
        (PNG_URI, "input_reference.png", "image/png", PNG),
        (JPEG_URI, "input_reference.jpg", "image/jpeg", b"\xff\xd8\xff\xe0" + b"\x01" * 16),
    ],
    ids=["png", "jpeg"],
)
def test_a_data_uri_image_is_uploaded_as_a_multipart_file_part(
    uri: str, filename: str, mime: str, data: bytes
) -> None:
    request = submitted(spec(image=uri, duration=12, size="720x1280"))
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = {
        part.get_param("name", header="content-disposition"): part
        for part in multipart_parts(request)
    }
    assert set(parts) == {"prompt", "model", "seconds", "size", "input_reference"}
    assert parts["seconds"].get_payload(decode=True) == b"12"
    assert parts["model"].get_payload(decode=True) == b"sora-2"
    file_part = parts["input_reference"]
    assert file_part.get_filename() == filename
    assert file_part.get_content_type() == mime
    assert file_part.get_payload(decode=True) == data


def test_submit_validates_before_sending_anything() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(InvalidSpec):
        provider_answering(answer(200, VIDEO), sent).submit(JOB_ID, spec(fps=24), KEY)
    assert sent == []


# --- submit: the answer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        answer(200, VIDEO | {"id": None}),
        answer(200, {"object": "video"}),
        lambda request: httpx.Response(200, text="<html>oops"),
    ],
    ids=["null-id", "no-id", "garbage"],
)
def test_a_200_submit_without_a_video_id_is_an_unknown_outcome(handler: Handler) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(handler).submit(JOB_ID, spec(), KEY)


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("Server disconnected")],
    ids=lambda exc: type(exc).__name__,
)
def test_a_submit_cut_off_after_sending_is_an_unknown_outcome(
    failure: httpx.TransportError,
) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(raising(failure)).submit(JOB_ID, spec(), KEY)


def test_a_submit_that_never_left_is_retryable() -> None:
    with pytest.raises(RetryableError) as caught:
        provider_answering(raising(httpx.ConnectError("refused"))).submit(JOB_ID, spec(), KEY)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


def test_a_gateway_timeout_on_submit_is_an_unknown_outcome_but_on_poll_retryable() -> None:
    provider = provider_answering(answer(504, None))
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit(JOB_ID, spec(), KEY)
    with pytest.raises(RetryableError):
        provider.poll(TASK, KEY)


# --- poll -------------------------------------------------------------------------------------


def test_poll_gets_the_video_with_bearer_auth() -> None:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, VIDEO), sent).poll(TASK, KEY)
    assert sent[0].method == "GET"
    assert str(sent[0].url) == f"{BASE}/videos/video_abc"
    assert sent[0].headers["authorization"] == f"Bearer {KEY.secret}"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (VIDEO, ProviderStatus.QUEUED),
        (IN_PROGRESS, ProviderStatus.RUNNING),
        (COMPLETED, ProviderStatus.SUCCEEDED),
        (FAILED, ProviderStatus.FAILED),
    ],
    ids=["queued", "in_progress", "completed", "failed"],
)
def test_every_status_is_normalised(body: dict[str, Any], status: ProviderStatus) -> None:
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.status is status
    assert result.raw_status == body["status"]


def test_in_progress_reports_progress_and_honours_openai_poll_after_ms() -> None:
    handler = answer(200, IN_PROGRESS, {"openai-poll-after-ms": "1500"})
    result = provider_answering(handler).poll(TASK, KEY)
    assert result.progress == 42.0
    assert result.poll_after_s == 1.5
    assert result.video_url is None


@pytest.mark.parametrize("header", [None, "soon", "-5", "inf"])
def test_a_missing_or_unreadable_poll_after_header_gives_no_hint(header: str | None) -> None:
    headers = {"openai-poll-after-ms": header} if header is not None else None
    result = provider_answering(answer(200, IN_PROGRESS, headers)).poll(TASK, KEY)
    assert result.poll_after_s is None


def test_completed_points_at_the_content_endpoint_and_its_thumbnail() -> None:
    result = provider_answering(answer(200, COMPLETED)).poll(TASK, KEY)
    assert result.video_url == f"{BASE}/videos/video_abc/content"
    assert result.cover_url == f"{BASE}/videos/video_abc/content?variant=thumbnail"
    assert result.progress == 100.0


def test_moderation_blocked_fails_the_job_as_content_policy() -> None:
    result = provider_answering(answer(200, FAILED)).poll(TASK, KEY)
    assert result.error_code == errors.CONTENT_POLICY
    assert result.error_message == "openai: moderation_blocked: …"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"code": "internal_error", "message": "boom"}, "openai: internal_error: boom"),
        (None, "openai: failed: the video failed (no detail given)"),
    ],
)
def test_other_failures_are_provider_failed_with_the_detail(
    error: dict[str, str] | None, message: str
) -> None:
    result = provider_answering(answer(200, FAILED | {"error": error})).poll(TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.PROVIDER_FAILED
    assert result.error_message == message


def test_an_unknown_status_is_running_with_a_warning_that_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vidqueue.providers.openai")
    result = provider_answering(answer(200, VIDEO | {"status": "cancelled"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.RUNNING
    assert result.raw_status == "cancelled"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "cancelled" in record.getMessage()
    assert KEY.secret not in caplog.text


@pytest.mark.parametrize(
    "handler",
    [answer(200, {"id": "video_abc"}), answer(200, ["a"]), lambda r: httpx.Response(200, text="{")],
    ids=["no-status", "not-an-object", "malformed"],
)
def test_an_unreadable_poll_answer_is_a_retryable_protocol_error(handler: Handler) -> None:
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


# --- errors -----------------------------------------------------------------------------------

RETRYABLE, PERMANENT = RetryableError, PermanentError


@pytest.mark.parametrize(
    ("status", "code", "kind", "error_code"),
    [
        (400, "invalid_value", PERMANENT, errors.INVALID_REQUEST),
        (400, "moderation_blocked", PERMANENT, errors.CONTENT_POLICY),
        (401, "invalid_api_key", PERMANENT, errors.AUTH_FAILED),
        (401, None, PERMANENT, errors.AUTH_FAILED),
        (403, None, PERMANENT, errors.PERMISSION_DENIED),
        (404, "not_found", PERMANENT, errors.INVALID_REQUEST),
        (404, "model_not_found", PERMANENT, errors.MODEL_NOT_FOUND),
        (409, None, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (422, None, PERMANENT, errors.INVALID_REQUEST),
        (429, "rate_limit_exceeded", RETRYABLE, errors.RATE_LIMITED),
        (429, "insufficient_quota", PERMANENT, errors.INSUFFICIENT_BALANCE),
        (500, None, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (503, None, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
    ],
)
def test_error_envelopes_are_classified(
    status: int, code: str | None, kind: type[VidqueueError], error_code: str
) -> None:
    with pytest.raises(kind) as caught:
        provider_answering(answer(status, error_body(code))).poll(TASK, KEY)
    assert type(caught.value) is kind
    assert caught.value.code == error_code
    assert "provider says no" in caught.value.message


def test_submit_errors_are_classified_like_poll_errors() -> None:
    provider = provider_answering(answer(400, error_body("moderation_blocked")))
    with pytest.raises(PermanentError) as caught:
        provider.submit(JOB_ID, spec(), KEY)
    assert caught.value.code == errors.CONTENT_POLICY


@pytest.mark.parametrize(
    ("headers", "wait_s"),
    [({"retry-after-ms": "1500", "retry-after": "9"}, 1.5), ({"retry-after": "7"}, 7.0)],
    ids=["retry-after-ms-first", "retry-after"],
)
def test_rate_limits_honour_retry_after_ms_then_retry_after(
    headers: dict[str, str], wait_s: float
) -> None:
    handler = answer(429, error_body("rate_limit_exceeded"), headers)
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).submit(JOB_ID, spec(), KEY)
    assert caught.value.retry_after_s == wait_s


def test_error_messages_never_contain_the_api_key() -> None:
    body = error_body("invalid_api_key", f"Incorrect API key provided: {KEY.secret}")
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(401, body)).submit(JOB_ID, spec(), KEY)
    assert KEY.secret not in str(caught.value)


# --- downloads, cancel, reconcile --------------------------------------------------------------


def test_the_key_is_sent_for_the_content_endpoint() -> None:
    provider = provider_answering(answer(200, {}))
    url = f"{BASE}/videos/video_abc/content?variant=thumbnail"
    assert provider.download_headers(url, KEY) == {"Authorization": f"Bearer {KEY.secret}"}


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.openai.com/videos/video_abc.mp4",
        "https://api.openai.com.evil.example/v1/videos/x/content",
        "https://api.openai.com@evil.example/v1/videos/x/content",
        "http://api.openai.com/v1/videos/x/content",
        "https://api.openai.com:8443/v1/videos/x/content",
        "https://api.openai.com:port/v1/videos/x/content",
        "https://api.openai.com/v1beta/videos/x/content",
        "https://api.openai.com/videos/x/content",
    ],
)
def test_the_key_never_goes_to_another_host_scheme_port_or_path(url: str) -> None:
    assert provider_answering(answer(200, {})).download_headers(url, KEY) == {}


def test_an_explicit_default_port_is_the_same_origin() -> None:
    assert under_base_url("https://api.openai.com:443/v1/videos/x/content", BASE)


def test_cancel_cannot_stop_a_running_video_and_reconcile_cannot_match_a_job() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, {}), sent)
    assert provider.cancel(TASK, KEY) is False
    assert provider.reconcile(JOB_ID, KEY) is None
    assert sent == []
    assert provider.idempotent_submit is False


def test_the_registry_builds_the_openai_adapter_and_its_validator() -> None:
    with httpx.Client() as client:
        assert isinstance(build(make_config(), client), OpenAIProvider)
    validator(make_config())(spec())


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "sora-1"}, "model"),
        ({"fps": 24}, "fps"),
        ({"quality": "high"}, "quality"),
        ({"with_audio": True}, "with_audio"),
        ({"seed": 7}, "seed"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"options": {"style": "anime"}}, "options.style"),
        ({"prompt": None, "image": "https://a/1.png"}, "prompt"),
        ({"duration": 5}, "duration"),
        ({"duration": 16}, "duration"),
        ({"size": "1920x1080"}, "size"),
        ({"size": "1024x1024"}, "size"),
        ({"image": ["https://a/1.png", "https://a/2.png"]}, "image"),
        ({"image": "ftp://a/1.png"}, "image"),
    ],
)
def test_what_sora_cannot_take_is_rejected_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validator(make_config())(spec(**fields))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "sora-2-pro", "size": "1920x1080", "duration": 12},
        {"model": "sora-2-pro-2025-10-06", "size": "1080x1920"},
        {"model": "sora-2-2025-12-08", "size": "1792x1024", "duration": 4},
        {"image": PNG_URI, "size": "720x1280"},
    ],
)
def test_what_the_wire_format_allows_is_accepted(fields: dict[str, Any]) -> None:
    validator(make_config())(spec(**fields))


# --- against the simulator --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, 1_800_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def forwarding_to(sim: TestClient) -> httpx.MockTransport:
    """An httpx transport handing each request to the in-process simulator (Starlette's
    TestClient is built on another HTTP library, so it cannot be the adapter's client)."""

    def forward(request: httpx.Request) -> httpx.Response:
        answer = sim.request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=request.content,
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(forward)


def simulated() -> tuple[OpenAIProvider, httpx.Client, FakeClock]:
    clock = FakeClock()
    options = SimOptions(gen_time_s=10, gen_jitter_s=0, seed=1, video_bytes=4096)
    sim = TestClient(create_app(options, clock=clock), base_url="http://sim.test")
    client = httpx.Client(transport=forwarding_to(sim), base_url="http://sim.test")
    return OpenAIProvider(make_config("http://sim.test/openai/v1"), client), client, clock


@pytest.mark.parametrize(
    "image", [None, "https://example.com/a.png", "png"], ids=["text", "url", "upload"]
)
def test_the_adapter_and_the_simulator_speak_the_same_format(image: str | None) -> None:
    provider, client, clock = simulated()
    reference = (
        "data:image/png;base64," + base64.b64encode(demo_png()).decode()
        if image == "png"
        else image
    )
    task = provider.submit(JOB_ID, spec(image=reference, duration=8, size="1280x720"), KEY)
    assert task.id.startswith("video_")
    first = provider.poll(task, KEY)
    assert (first.status, first.progress, first.poll_after_s) == (ProviderStatus.QUEUED, 0.0, 2.0)
    clock.advance(5)
    assert provider.poll(task, KEY).status is ProviderStatus.RUNNING
    clock.advance(5)
    done = provider.poll(task, KEY)
    assert done.status is ProviderStatus.SUCCEEDED and done.video_url and done.cover_url
    expected = client.get(f"/_sim/tasks/{task.id}/sha256").json()
    # Then the content needs the key, which download_headers gives for the simulator's URL
    assert client.get(done.video_url).status_code == 401
    video = client.get(done.video_url, headers=provider.download_headers(done.video_url, KEY))
    cover = client.get(done.cover_url, headers=provider.download_headers(done.cover_url, KEY))
    assert hashlib.sha256(video.content).hexdigest() == expected["video"]
    assert hashlib.sha256(cover.content).hexdigest() == expected["cover"]


def test_the_simulated_content_expires_url_ttl_after_completion() -> None:
    provider, client, clock = simulated()
    task = provider.submit(JOB_ID, spec(), KEY)
    clock.advance(10)
    url = provider.poll(task, KEY).video_url
    assert url is not None
    clock.advance(3601)
    assert client.get(url, headers=provider.download_headers(url, KEY)).status_code == 404
    assert client.get("/_sim/stats").json()["expired_url_403"] == 1


def test_the_simulator_rejects_an_integer_seconds_like_openai() -> None:
    _, client, _ = simulated()
    body = {"prompt": "p", "model": "sora-2", "seconds": 8}
    answer = client.post("/openai/v1/videos", json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "seconds"
