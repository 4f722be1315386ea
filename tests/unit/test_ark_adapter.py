"""Contract tests of the Ark adapter (Doubao Seedance) against docs/wire-formats.md §4.

The HTTP seam is an ``httpx.MockTransport`` answering the exact JSON examples of §4. The last
section runs the adapter against the simulator's Ark router in-process, with a fake clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from config.providers import ApiKey, ProviderConfig
from simulator.app import create_app
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
from workers.providers.ark import QUOTA_RETRY_S, ArkProvider
from workers.providers.base import ProviderTask

BASE = "https://ark.cn-beijing.volces.com/api/v3"
KEY = ApiKey(id="ARK_API_KEY", secret="ark-SECRET-3f9a")
JOB_ID = "job-0f1e2d3c4b5a"
MODEL = "doubao-seedance-1-5-pro-251215"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
TASK = ProviderTask(id="cgt-20260101123456-abcde")
TASK_URL = f"{BASE}/contents/generations/tasks/cgt-20260101123456-abcde"

# The §4 examples, verbatim where the document gives whole bodies.
SUBMIT_OK = {"id": "cgt-20260101123456-abcde"}
RUNNING = {
    "id": "cgt-…",
    "model": "doubao-seedance-1-5-pro-251215",
    "status": "running",
    "created_at": 1760000000,
    "updated_at": 1760000010,
}
SUCCEEDED = {
    "id": "cgt-…",
    "model": "…",
    "status": "succeeded",
    "content": {"video_url": "https://ark-content-generation-…tos…/x.mp4", "last_frame_url": None},
    "usage": {"completion_tokens": 108900, "total_tokens": 108900},
    "seed": 1276,
    "resolution": "720p",
    "ratio": "16:9",
    "duration": 5,
    "framespersecond": 24,
    "service_tier": "default",
    "execution_expires_after": 172800,
    "generate_audio": True,
    "created_at": 1760000000,
    "updated_at": 1760000300,
}
FAILED = {
    "id": "cgt-…",
    "status": "failed",
    "error": {"code": "OutputVideoSensitiveContentDetected", "message": "…"},
}

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "ark",
        "kind": "ark",
        "base_url": BASE,
        "api_key_env": ["ARK_API_KEY"],
        "request_timeout_s": 12.5,
    }
    return ProviderConfig(**(fields | overrides))


def provider_answering(handler: Handler, sent: list[httpx.Request] | None = None) -> ArkProvider:
    def record(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return handler(request)

    return ArkProvider(make_config(), httpx.Client(transport=httpx.MockTransport(record)))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**({"provider": "ark", "model": MODEL} | fields))


def submit_sending(job: JobSpec) -> tuple[httpx.Request, dict[str, Any]]:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, SUBMIT_OK), sent).submit(JOB_ID, job, KEY)
    assert len(sent) == 1
    return sent[0], json.loads(sent[0].content)


def error_body(code: str, message: str = "provider says no", param: str = "") -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": f"{message} Request ID: 2026…",
            "param": param,
            "type": "BadRequest",
        }
    }


def _raising(exc: httpx.TransportError) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


# --- submit: the exact request ----------------------------------------------------------------


def test_text_to_video_posts_model_and_a_text_item_with_bearer_auth() -> None:
    request, body = submit_sending(spec(prompt="a cat surfing"))
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/contents/generations/tasks"
    assert request.headers["authorization"] == f"Bearer {KEY.secret}"
    assert request.headers["content-type"] == "application/json"
    assert request.extensions["timeout"]["read"] == 12.5
    assert body == {"model": MODEL, "content": [{"type": "text", "text": "a cat surfing"}]}


def test_every_body_field_comes_from_the_spec_or_its_options() -> None:
    options = {
        "resolution": "1080p",
        "ratio": "adaptive",
        "camera_fixed": True,
        "watermark": False,
        "return_last_frame": True,
        "callback_url": "https://hooks.example.com/ark",
        "service_tier": "flex",
        "execution_expires_after": 3600,
    }
    job = spec(prompt="p", duration=12, seed=4294967295, with_audio=True, options=options)
    _, body = submit_sending(job)
    assert body == {
        "model": MODEL,
        "content": [{"type": "text", "text": "p"}],
        "duration": 12,
        "seed": 4294967295,
        "generate_audio": True,
        **options,
    }


def test_frames_replaces_duration() -> None:
    _, body = submit_sending(spec(prompt="p", seed=-1, options={"frames": 121}))
    assert body["frames"] == 121
    assert body["seed"] == -1
    assert "duration" not in body


def test_one_image_is_the_first_frame() -> None:
    _, body = submit_sending(spec(prompt="move", image="https://example.com/a.jpg"))
    assert body["content"] == [
        {"type": "text", "text": "move"},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/a.jpg"},
            "role": "first_frame",
        },
    ]


def test_two_images_are_first_and_last_frame_and_data_uris_go_unchanged() -> None:
    _, body = submit_sending(spec(image=["https://example.com/a.jpg", PNG_URI]))
    assert body["content"] == [
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/a.jpg"},
            "role": "first_frame",
        },
        {"type": "image_url", "image_url": {"url": PNG_URI}, "role": "last_frame"},
    ]


def test_image_roles_may_make_images_references_and_are_not_sent_as_a_field() -> None:
    images = ["https://example.com/a.png", "asset://asset-123"]
    job = spec(prompt="p", image=images, options={"image_roles": ["reference_image"] * 2})
    _, body = submit_sending(job)
    assert [item.get("role") for item in body["content"]] == [
        None,
        "reference_image",
        "reference_image",
    ]
    assert "image_roles" not in body


def test_the_job_id_is_not_sent_anywhere() -> None:
    request, _ = submit_sending(spec(prompt="p"))
    assert JOB_ID not in request.content.decode()
    assert JOB_ID not in str(request.headers)


def test_submit_validates_before_sending_anything() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(InvalidSpec):
        provider_answering(answer(200, SUBMIT_OK), sent).submit(
            JOB_ID, spec(prompt="p", fps=24), KEY
        )
    assert sent == []


# --- submit: the answer -------------------------------------------------------------------------


def test_submit_returns_the_task_id_of_the_documented_response() -> None:
    task = provider_answering(answer(200, SUBMIT_OK)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert task == ProviderTask(id="cgt-20260101123456-abcde")


@pytest.mark.parametrize(
    "handler",
    [answer(200, {}), answer(200, {"id": ""}), lambda request: httpx.Response(200, text="<html>")],
    ids=["no-id", "empty-id", "garbage"],
)
def test_a_200_without_a_readable_id_is_an_unknown_outcome(handler: Handler) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(handler).submit(JOB_ID, spec(prompt="p"), KEY)


def test_a_submit_lost_after_sending_is_an_unknown_outcome() -> None:
    provider = provider_answering(_raising(httpx.ReadTimeout("timed out")))
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit(JOB_ID, spec(prompt="p"), KEY)


def test_a_submit_that_never_reached_ark_is_retryable() -> None:
    provider = provider_answering(_raising(httpx.ConnectError("refused")))
    with pytest.raises(RetryableError) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


def test_ark_submits_are_not_idempotent_and_cannot_be_reconciled() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, SUBMIT_OK), sent)
    assert provider.idempotent_submit is False
    assert provider.reconcile(JOB_ID, KEY) is None
    assert sent == []


# --- poll ---------------------------------------------------------------------------------------


def test_poll_gets_the_task_with_bearer_auth() -> None:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, RUNNING), sent).poll(TASK, KEY)
    assert sent[0].method == "GET"
    assert str(sent[0].url) == TASK_URL
    assert sent[0].headers["authorization"] == f"Bearer {KEY.secret}"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("queued", ProviderStatus.QUEUED),
        ("running", ProviderStatus.RUNNING),
        ("cancelled", ProviderStatus.CANCELLED),
    ],
)
def test_poll_maps_the_unfinished_and_cancelled_statuses(raw: str, status: ProviderStatus) -> None:
    result = provider_answering(answer(200, RUNNING | {"status": raw})).poll(TASK, KEY)
    assert result.status is status
    assert result.raw_status == raw
    assert result.video_url is None


def test_cancelled_carries_the_cancelled_error_code() -> None:
    result = provider_answering(answer(200, RUNNING | {"status": "cancelled"})).poll(TASK, KEY)
    assert result.error_code == errors.CANCELLED


def test_succeeded_gives_the_video_url_and_no_cover_when_last_frame_is_null() -> None:
    result = provider_answering(answer(200, SUCCEEDED)).poll(TASK, KEY)
    assert result.status is ProviderStatus.SUCCEEDED
    assert result.video_url == "https://ark-content-generation-…tos…/x.mp4"
    assert result.cover_url is None
    assert result.raw_status == "succeeded"


def test_succeeded_with_a_last_frame_uses_it_as_the_cover() -> None:
    content = {"video_url": "https://tos/x.mp4", "last_frame_url": "https://tos/x_last.png"}
    result = provider_answering(answer(200, SUCCEEDED | {"content": content})).poll(TASK, KEY)
    assert result.cover_url == "https://tos/x_last.png"


@pytest.mark.parametrize("content", [None, {}, {"video_url": ""}, "https://tos/x.mp4"])
def test_succeeded_without_a_video_url_is_a_permanent_protocol_error(content: Any) -> None:
    body = {key: value for key, value in SUCCEEDED.items() if key != "content"}
    if content is not None:
        body["content"] = content
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(200, body)).poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_failed_with_output_moderation_is_a_content_policy_failure() -> None:
    result = provider_answering(answer(200, FAILED)).poll(TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.CONTENT_POLICY
    assert result.error_message == "ark: OutputVideoSensitiveContentDetected: …"


def test_failed_for_another_reason_is_provider_failed() -> None:
    body = FAILED | {"error": {"code": "InternalServiceError", "message": "boom"}}
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.error_code == errors.PROVIDER_FAILED
    assert result.error_message == "ark: InternalServiceError: boom"


def test_failed_without_detail_still_fails() -> None:
    result = provider_answering(answer(200, {"status": "failed"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_message == "ark: the task failed (no detail)"


def test_expired_is_a_failure_with_the_timeout_code() -> None:
    result = provider_answering(answer(200, RUNNING | {"status": "expired"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.TIMEOUT
    assert result.raw_status == "expired"


def test_an_unknown_status_is_running_with_a_warning_that_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vidqueue.providers.ark")
    result = provider_answering(answer(200, RUNNING | {"status": "paused"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.RUNNING
    assert result.raw_status == "paused"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "paused" in record.getMessage()
    assert KEY.secret not in caplog.text


@pytest.mark.parametrize(
    "handler",
    [answer(200, {"id": "cgt-1"}), answer(200, ["a"]), lambda r: httpx.Response(200, text="{")],
    ids=["no-status", "not-an-object", "malformed"],
)
def test_an_unreadable_poll_answer_is_a_retryable_protocol_error(handler: Handler) -> None:
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_result_urls_are_presigned_so_downloads_send_no_headers() -> None:
    provider = provider_answering(answer(200, {}))
    assert provider.download_headers("https://ark-content-generation.tos/x.mp4", KEY) == {}


# --- errors -------------------------------------------------------------------------------------

RETRYABLE, PERMANENT = RetryableError, PermanentError


@pytest.mark.parametrize(
    ("status", "code", "kind", "error_code"),
    [
        (400, "MissingParameter", PERMANENT, errors.INVALID_REQUEST),
        (400, "InvalidParameter", PERMANENT, errors.INVALID_REQUEST),
        (400, "InvalidEndpoint.ClosedEndpoint", PERMANENT, errors.INVALID_REQUEST),
        (400, "InputTextSensitiveContentDetected", PERMANENT, errors.CONTENT_POLICY),
        (
            400,
            "InputImageSensitiveContentDetected.PrivacyInformation",
            PERMANENT,
            errors.CONTENT_POLICY,
        ),
        (401, "AuthenticationError", PERMANENT, errors.AUTH_FAILED),
        (403, "AccountOverdueError", PERMANENT, errors.INSUFFICIENT_BALANCE),
        (403, "AccessDenied", PERMANENT, errors.PERMISSION_DENIED),
        (404, "InvalidEndpointOrModel.NotFound", PERMANENT, errors.MODEL_NOT_FOUND),
        (404, "ModelNotOpen", PERMANENT, errors.MODEL_NOT_FOUND),
        (429, "RateLimitExceeded.EndpointRPMExceeded", RETRYABLE, errors.RATE_LIMITED),
        (429, "RateLimitExceeded.EndpointTPMExceeded", RETRYABLE, errors.RATE_LIMITED),
        (429, "RateLimitExceeded", RETRYABLE, errors.RATE_LIMITED),
        (429, "ModelAccountRpmRateLimitExceeded", RETRYABLE, errors.RATE_LIMITED),
        (429, "ServerOverloaded", RETRYABLE, errors.RATE_LIMITED),
        (429, "QuotaExceeded", RETRYABLE, errors.QUOTA_EXCEEDED),
        (500, "InternalServiceError", RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (503, "ServiceUnavailable", RETRYABLE, errors.PROVIDER_UNAVAILABLE),
    ],
)
def test_error_answers_are_classified_on_submit_and_poll(
    status: int, code: str, kind: type[VidqueueError], error_code: str
) -> None:
    provider = provider_answering(answer(status, error_body(code)))
    for call in (
        lambda: provider.submit(JOB_ID, spec(prompt="p"), KEY),
        lambda: provider.poll(TASK, KEY),
    ):
        with pytest.raises(kind) as caught:
            call()
        assert type(caught.value) is kind
        assert caught.value.code == error_code
        assert caught.value.message.startswith(f"ark: {code}: provider says no")


def test_rate_limits_honour_retry_after() -> None:
    handler = answer(429, error_body("RateLimitExceeded.EndpointRPMExceeded"), {"Retry-After": "7"})
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("header", [None, "5", "3600"])
def test_quota_exceeded_waits_the_longest_countdown_allowed(header: str | None) -> None:
    headers = {"Retry-After": header} if header else None
    with pytest.raises(RetryableError) as caught:
        provider_answering(answer(429, error_body("QuotaExceeded"), headers)).poll(TASK, KEY)
    assert caught.value.retry_after_s == QUOTA_RETRY_S == 60.0


def test_error_messages_never_contain_the_api_key() -> None:
    body = error_body("AuthenticationError", f"bad key {KEY.secret}")
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(401, body)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert KEY.secret not in str(caught.value)


# --- cancel -------------------------------------------------------------------------------------


def scripted(*answers: httpx.Response | Exception) -> tuple[ArkProvider, list[httpx.Request]]:
    """A provider whose calls get ``answers`` in order."""
    queue, sent = list(answers), []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    provider = ArkProvider(make_config(), httpx.Client(transport=httpx.MockTransport(handler)))
    return provider, sent


def status(raw: str) -> httpx.Response:
    return httpx.Response(200, json=RUNNING | {"status": raw})


def test_cancel_deletes_a_queued_task_and_confirms_it_is_cancelled() -> None:
    provider, sent = scripted(status("queued"), httpx.Response(200, json={}), status("cancelled"))
    assert provider.cancel(TASK, KEY) is True
    assert [(r.method, str(r.url)) for r in sent] == [
        ("GET", TASK_URL),
        ("DELETE", TASK_URL),
        ("GET", TASK_URL),
    ]
    assert sent[1].headers["authorization"] == f"Bearer {KEY.secret}"


def test_cancel_counts_a_task_gone_after_delete_as_cancelled() -> None:
    gone = httpx.Response(404, json=error_body("ResourceNotFound"))
    provider, _ = scripted(status("running"), httpx.Response(204), gone)
    assert provider.cancel(TASK, KEY) is True


def test_cancel_is_false_when_a_running_task_runs_on_after_a_200_delete() -> None:
    provider, _ = scripted(status("running"), httpx.Response(200, json={}), status("running"))
    assert provider.cancel(TASK, KEY) is False


def test_cancel_is_false_when_ark_refuses_the_delete() -> None:
    refused = httpx.Response(400, json=error_body("InvalidParameter", "cannot cancel"))
    provider, sent = scripted(status("running"), refused)
    assert provider.cancel(TASK, KEY) is False
    assert len(sent) == 2


def test_cancel_of_a_cancelled_task_is_true_without_a_delete() -> None:
    provider, sent = scripted(status("cancelled"))
    assert provider.cancel(TASK, KEY) is True
    assert [r.method for r in sent] == ["GET"]


@pytest.mark.parametrize("raw", ["succeeded", "failed", "expired"])
def test_cancel_never_deletes_a_finished_task(raw: str) -> None:
    body = SUCCEEDED if raw == "succeeded" else RUNNING | {"status": raw}
    provider, sent = scripted(httpx.Response(200, json=body))
    assert provider.cancel(TASK, KEY) is False
    assert [r.method for r in sent] == ["GET"]


@pytest.mark.parametrize(
    "answers",
    [
        (httpx.ConnectError("refused"),),
        (status("queued"), httpx.ReadTimeout("timed out")),
        (status("queued"), httpx.Response(200, json={}), httpx.ReadTimeout("timed out")),
        (status("queued"), httpx.Response(200, json={}), httpx.Response(500, text="oops")),
    ],
    ids=["first-get-fails", "delete-times-out", "check-times-out", "check-errors"],
)
def test_cancel_is_false_on_any_doubt_and_never_raises(
    answers: tuple[httpx.Response | Exception, ...],
) -> None:
    provider, _ = scripted(*answers)
    assert provider.cancel(TASK, KEY) is False


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"size": "1280x720"}, "size"),
        ({"fps": 24}, "fps"),
        ({"quality": "speed"}, "quality"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"duration": 2}, "duration"),
        ({"duration": 13}, "duration"),
        ({"options": {"resolution": "4k"}}, "options.resolution"),
        ({"options": {"ratio": "2:1"}}, "options.ratio"),
        ({"options": {"frames": 0}}, "options.frames"),
        ({"options": {"frames": True}}, "options.frames"),
        ({"duration": 5, "options": {"frames": 121}}, "options.frames"),
        ({"options": {"camera_fixed": "yes"}}, "options.camera_fixed"),
        ({"options": {"watermark": 1}}, "options.watermark"),
        ({"options": {"return_last_frame": None}}, "options.return_last_frame"),
        ({"options": {"callback_url": "ftp://x"}}, "options.callback_url"),
        ({"options": {"service_tier": "fast"}}, "options.service_tier"),
        ({"options": {"execution_expires_after": 3599}}, "options.execution_expires_after"),
        ({"options": {"execution_expires_after": 259201}}, "options.execution_expires_after"),
        ({"options": {"draft": True}}, "options.draft"),
        ({"options": {"image_roles": ["first_frame"]}}, "options.image_roles"),
        ({"options": {"image_roles": "first_frame"}}, "options.image_roles"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        (
            {
                "image": ["https://a/1.png", "https://a/2.png"],
                "options": {"image_roles": ["last_frame", "first_frame"]},
            },
            "options.image_roles",
        ),
        (
            {
                "image": ["https://a/1.png", "https://a/2.png"],
                "options": {"image_roles": ["first_frame", "reference_image"]},
            },
            "options.image_roles",
        ),
        (
            {"image": "https://a/1.png", "options": {"image_roles": ["last_frame"]}},
            "options.image_roles",
        ),
        ({"model": "doubao-seedance-1-0-lite-t2v", "image": "https://a/1.png"}, "image"),
        ({"model": "doubao-seedance-1-0-lite-i2v"}, "image"),
    ],
)
def test_validation_rejects_what_ark_cannot_take_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validator(make_config())(spec(**({"prompt": "p"} | fields)))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields",
    [
        {"duration": 3},
        {"duration": 12, "seed": -1, "with_audio": False},
        {"options": {"frames": 29, "execution_expires_after": 259200, "ratio": "9:21"}},
        {"image": PNG_URI, "model": "doubao-seedance-1-0-lite-i2v"},
        {"image": "https://a/1.png", "options": {"image_roles": ["reference_image"]}},
        {"model": "ep-20260101-abcd", "options": {"resolution": "480p"}},
    ],
)
def test_validation_accepts_what_the_wire_format_allows(fields: dict[str, Any]) -> None:
    validator(make_config())(spec(**({"prompt": "p"} | fields)))


def test_the_registry_builds_the_ark_adapter() -> None:
    with httpx.Client() as client:
        assert isinstance(build(make_config(), client), ArkProvider)


# --- against the simulator ----------------------------------------------------------------------


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


SIM_KEY = ApiKey(id="SIM_ARK_KEY", secret="sim-key-ark-test")


@pytest.fixture
def sim() -> Iterator[tuple[ArkProvider, FakeClock, TestClient]]:
    """The Ark adapter wired to an in-process simulator (10 s generations, fake clock)."""
    clock = FakeClock()
    app = create_app(SimOptions(gen_time_s=10, gen_jitter_s=0, seed=1), clock=clock)
    with TestClient(app, base_url="http://sim.test") as backend:

        def forward(request: httpx.Request) -> httpx.Response:
            reply = backend.request(
                request.method,
                str(request.url),
                headers=dict(request.headers),
                content=request.content,
            )
            return httpx.Response(
                reply.status_code, headers=reply.headers.multi_items(), content=reply.content
            )

        client = httpx.Client(transport=httpx.MockTransport(forward))
        config = make_config(base_url="http://sim.test/ark/api/v3")
        yield ArkProvider(config, client), clock, backend


def test_the_simulator_runs_a_task_queued_running_succeeded_with_a_last_frame(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, clock, backend = sim
    task = provider.submit(JOB_ID, spec(prompt="p", options={"return_last_frame": True}), SIM_KEY)
    assert task.id.startswith("cgt-")
    assert provider.poll(task, SIM_KEY).status is ProviderStatus.QUEUED
    clock.advance(3)
    assert provider.poll(task, SIM_KEY).status is ProviderStatus.RUNNING
    clock.advance(8)
    done = provider.poll(task, SIM_KEY)
    assert done.status is ProviderStatus.SUCCEEDED
    assert done.video_url is not None and done.cover_url is not None
    hashes = backend.get(f"/_sim/tasks/{task.id}/sha256").json()
    video = backend.get(done.video_url.removeprefix("http://sim.test")).content
    assert hashlib.sha256(video).hexdigest() == hashes["video"]


def test_the_simulator_cancels_a_queued_task_and_frees_its_slot(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, _, backend = sim
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    assert provider.cancel(task, SIM_KEY) is True
    assert provider.poll(task, SIM_KEY).status is ProviderStatus.CANCELLED
    assert backend.get("/_sim/stats").json()["in_flight_by_key"] == {SIM_KEY.secret: 0}


def test_the_simulator_lets_a_running_task_run_on_after_delete(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, clock, backend = sim
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    clock.advance(3)
    assert provider.cancel(task, SIM_KEY) is False
    assert backend.get("/_sim/stats").json()["in_flight_by_key"] == {SIM_KEY.secret: 1}
    clock.advance(8)
    assert provider.poll(task, SIM_KEY).status is ProviderStatus.SUCCEEDED


def test_the_simulator_deletes_a_finished_record_on_delete(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, clock, backend = sim
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    clock.advance(11)
    headers = {"Authorization": f"Bearer {SIM_KEY.secret}"}
    path = f"/ark/api/v3/contents/generations/tasks/{task.id}"
    assert backend.delete(path, headers=headers).status_code == 200
    assert backend.get(path, headers=headers).status_code == 404


def test_the_simulator_refuses_over_the_concurrency_limit_with_rate_limit_exceeded(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, _, backend = sim
    backend.post("/_sim/options", json={"concurrency_limit": 1})
    provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    with pytest.raises(RetryableError) as caught:
        provider.submit("job-2", spec(prompt="p"), SIM_KEY)
    assert caught.value.code == errors.RATE_LIMITED
    assert "RateLimitExceeded" in caught.value.message


def test_the_simulator_reports_injected_failures_and_errors_as_ark_does(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, clock, backend = sim
    backend.post("/_sim/options", json={"fail_rate": 1.0})
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    clock.advance(11)
    failed = provider.poll(task, SIM_KEY)
    assert failed.status is ProviderStatus.FAILED
    assert failed.error_message == "ark: InternalServiceError: simulated failure"
    backend.post("/_sim/options", json={"poll_error_rate": 1.0, "submit_error_rate": 1.0})
    with pytest.raises(RetryableError):
        provider.poll(task, SIM_KEY)
    with pytest.raises(RetryableError):
        provider.submit("job-2", spec(prompt="p"), SIM_KEY)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"content": [{"type": "text", "text": "p"}]}, 400, "MissingParameter", "model"),
        (
            {"model": MODEL, "content": [{"type": "text", "text": "p"}], "duration": "5"},
            400,
            "InvalidParameter",
            "duration",
        ),
        (
            {"model": MODEL, "content": [{"type": "text", "text": "p"}], "ratio": "2:1"},
            400,
            "InvalidParameter",
            "ratio",
        ),
        (
            {"model": "sora-2", "content": [{"type": "text", "text": "p"}]},
            404,
            "InvalidEndpointOrModel.NotFound",
            "",
        ),
        (
            {
                "model": MODEL,
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://a/1.png"},
                        "role": "last_frame",
                    }
                ],
            },
            400,
            "InvalidParameter",
            "content",
        ),
    ],
)
def test_the_simulator_refuses_bad_bodies_with_arks_codes(
    sim: tuple[ArkProvider, FakeClock, TestClient],
    body: dict[str, Any],
    status: int,
    code: str,
    param: str,
) -> None:
    _, _, backend = sim
    headers = {"Authorization": f"Bearer {SIM_KEY.secret}"}
    reply = backend.post("/ark/api/v3/contents/generations/tasks", json=body, headers=headers)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert "Request ID: " in error["message"]
    assert reply.headers["x-request-id"]


def test_the_simulator_refuses_a_missing_or_invalid_key_with_authentication_error(
    sim: tuple[ArkProvider, FakeClock, TestClient],
) -> None:
    provider, _, _ = sim
    for secret in ("", "invalid-key"):
        with pytest.raises(PermanentError) as caught:
            provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="K", secret=secret))
        assert caught.value.code == errors.AUTH_FAILED
