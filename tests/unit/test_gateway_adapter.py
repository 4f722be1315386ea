"""Contract tests of the new-api gateway adapter against the wire format (docs/wire-formats.md §3).

The HTTP seam is an ``httpx.MockTransport`` answering §3's examples (the OpenAI-style submit
answer and its older ``{"task_id","status"}`` shape, the ``{"code":"success","data":TaskDto}``
poll envelope, task and middleware errors); the last section runs the adapter against the
simulator in-process.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

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
from workers.providers.base import ProviderTask
from workers.providers.gateway import GatewayProvider

BASE = "https://gateway.example.com"
KEY = ApiKey(id="GATEWAY_TOKEN", secret="sk-GATEWAY-SECRET-0123456789")
JOB_ID = "job-0f1e2d3c4b5a"
TASK_ID = "task_Ab12cd34Ef56gh78Ij90kl12Mn34op56"
# docs/wire-formats.md §3: the submit answer of current builds, and the older documented shape.
SUBMIT_OK = {
    "id": TASK_ID,
    "task_id": TASK_ID,
    "object": "video",
    "model": "kling-v1",
    "status": "queued",
    "progress": 0,
    "created_at": 1760000000,
}
SUBMIT_OLD = {"task_id": TASK_ID, "status": "queued"}
# A TaskDto with every field §3 lists (Aug-2026 build).
DTO: dict[str, Any] = {
    "id": 42,
    "created_at": 1760000000,
    "updated_at": 1760000030,
    "task_id": TASK_ID,
    "platform": "kling",
    "user_id": 1,
    "group": "default",
    "channel_id": 3,
    "quota": 5000,
    "action": "textGenerate",
    "status": "IN_PROGRESS",
    "fail_reason": "",
    "result_url": "",
    "submit_time": 1760000000,
    "start_time": 1760000010,
    "finish_time": 0,
    "progress": "30%",
    "properties": {},
    "data": {},
}
VENDOR_URL = "https://v1-kling.klingai.com/bs2/upload-ylab-stunt/abc.mp4?x-kcdn-pid=1"
TASK = ProviderTask(id=TASK_ID)
SATURATED = "当前分组上游负载已饱和，请稍后再试"

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(base_url: str = BASE) -> ProviderConfig:
    return ProviderConfig(
        name="gateway",
        kind="gateway",
        base_url=base_url,
        api_key_env=["GATEWAY_TOKEN"],
        request_timeout_s=12.5,
    )


def provider_answering(
    handler: Handler, sent: list[httpx.Request] | None = None
) -> GatewayProvider:
    def record(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return handler(request)

    return GatewayProvider(make_config(), httpx.Client(transport=httpx.MockTransport(record)))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def envelope(**dto: Any) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": DTO | dto}


def task_error(code: str, message: str = "gateway says no") -> dict[str, Any]:
    return {"code": code, "message": message, "data": None}


def middleware_error(code: str, message: str = "gateway says no") -> dict[str, Any]:
    full = f"{message} (request id: 20260801123456789)"
    return {"error": {"message": full, "type": "new_api_error", "code": code}}


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**({"provider": "gateway", "model": "kling-v1", "prompt": "a cat"} | fields))


def body_sent(job: JobSpec) -> dict[str, Any]:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, SUBMIT_OK), sent).submit(JOB_ID, job, KEY)
    [request] = sent
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/video/generations"
    assert request.headers["authorization"] == f"Bearer {KEY.secret}"
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.content)
    return body


def poll_with(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return provider_answering(answer(status, body, headers)).poll(TASK, KEY)


# --- submit: the exact request ----------------------------------------------------------------


def test_kling_text_to_video_puts_vendor_fields_and_the_job_id_in_metadata() -> None:
    camera = {"type": "simple", "config": {"horizontal": 1.0, "vertical": 0, "zoom": 0.5}}
    job = spec(
        size="1920x1080",
        duration=5,
        negative_prompt="blur",
        options={"cfg_scale": 0.8, "camera_control": camera},
    )
    assert body_sent(job) == {
        "model": "kling-v1",
        "prompt": "a cat",
        "size": "1920x1080",
        "duration": 5,
        "metadata": {
            "cfg_scale": 0.8,
            "camera_control": camera,
            "negative_prompt": "blur",
            "external_task_id": JOB_ID,
        },
    }


def test_kling_first_and_last_frame_go_as_image_and_image_tail() -> None:
    body = body_sent(spec(model="kling-v2-master", image=["https://a/1.png", "https://a/2.png"]))
    assert body["image"] == "https://a/1.png"
    assert body["metadata"] == {"image_tail": "https://a/2.png", "external_task_id": JOB_ID}


def test_vidu_image_to_video_sends_image_and_the_seed_in_metadata() -> None:
    job = spec(model="viduq1", image="https://a/1.png", seed=0, options={"bgm": True})
    assert body_sent(job) == {
        "model": "viduq1",
        "prompt": "a cat",
        "image": "https://a/1.png",
        "metadata": {"bgm": True, "seed": 0},
    }


def test_doubao_takes_images_and_with_audio_as_generate_audio() -> None:
    job = spec(
        model="doubao-seedance-1-0-pro-250528",
        image=["https://a/1.png", "https://a/2.png"],
        with_audio=True,
        duration=10,
        options={"resolution": "1080p", "camera_fixed": False},
    )
    assert body_sent(job) == {
        "model": "doubao-seedance-1-0-pro-250528",
        "prompt": "a cat",
        "images": ["https://a/1.png", "https://a/2.png"],
        "duration": 10,
        "metadata": {"resolution": "1080p", "camera_fixed": False, "generate_audio": True},
    }


def test_jimeng_without_options_sends_no_metadata() -> None:
    assert body_sent(spec(model="jimeng_vgfm_t2v_l20")) == {
        "model": "jimeng_vgfm_t2v_l20",
        "prompt": "a cat",
    }


def test_sora_behind_the_gateway_takes_openai_style_seconds_and_input_reference() -> None:
    job = spec(model="sora-2", duration=8, size="1280x720", image="https://a/1.png")
    assert body_sent(job) == {
        "model": "sora-2",
        "prompt": "a cat",
        "input_reference": "https://a/1.png",
        "size": "1280x720",
        "seconds": "8",
    }


def test_an_unknown_model_passes_its_options_through_as_metadata() -> None:
    body = body_sent(spec(model="hailuo-02", options={"prompt_optimizer": False}))
    assert body["metadata"] == {"prompt_optimizer": False}


def test_submit_validates_before_sending_anything() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(InvalidSpec):
        provider_answering(answer(200, SUBMIT_OK), sent).submit(JOB_ID, spec(fps=24), KEY)
    assert sent == []


# --- submit: the answer -----------------------------------------------------------------------


@pytest.mark.parametrize("body", [SUBMIT_OK, SUBMIT_OLD], ids=["openai-style", "older"])
def test_submit_reads_the_task_id_from_either_answer_shape(body: dict[str, Any]) -> None:
    task = provider_answering(answer(200, body)).submit(JOB_ID, spec(), KEY)
    assert task == ProviderTask(id=TASK_ID)


def test_submit_falls_back_to_id_when_task_id_is_missing() -> None:
    body = {k: v for k, v in SUBMIT_OK.items() if k != "task_id"}
    assert provider_answering(answer(200, body)).submit(JOB_ID, spec(), KEY).id == TASK_ID


@pytest.mark.parametrize(
    "handler",
    [answer(200, {"object": "video"}), lambda r: httpx.Response(200, text="<html>")],
    ids=["no-id", "garbage"],
)
def test_a_200_submit_without_a_task_id_is_an_unknown_outcome(handler: Handler) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(handler).submit(JOB_ID, spec(), KEY)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, task_error("do_request_failed", "upstream error: do request failed")),
        (504, None),
    ],
    ids=["do_request_failed", "gateway-timeout"],
)
def test_a_submit_lost_on_the_way_upstream_is_an_unknown_outcome(status: int, body: Any) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(answer(status, body)).submit(JOB_ID, spec(), KEY)


def test_a_submit_cut_off_after_sending_is_an_unknown_outcome() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(handler).submit(JOB_ID, spec(), KEY)


# --- poll -------------------------------------------------------------------------------------


def test_poll_gets_the_generic_task_route_with_bearer_auth() -> None:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, envelope()), sent).poll(TASK, KEY)
    assert sent[0].method == "GET"
    assert str(sent[0].url) == f"{BASE}/v1/video/generations/{TASK_ID}"
    assert sent[0].headers["authorization"] == f"Bearer {KEY.secret}"
    assert sent[0].extensions["timeout"]["read"] == 12.5


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("NOT_START", ProviderStatus.QUEUED),
        ("SUBMITTED", ProviderStatus.QUEUED),
        ("QUEUED", ProviderStatus.QUEUED),
        ("IN_PROGRESS", ProviderStatus.RUNNING),
        ("UNKNOWN", ProviderStatus.RUNNING),
        ("SUCCESS", ProviderStatus.SUCCEEDED),
        ("FAILURE", ProviderStatus.FAILED),
    ],
)
def test_every_task_dto_status_is_normalised(raw: str, status: ProviderStatus) -> None:
    result = poll_with(envelope(status=raw, result_url=VENDOR_URL))
    assert result.status is status
    assert result.raw_status == raw


def test_progress_is_read_from_its_percent_string() -> None:
    assert poll_with(envelope(progress="30%")).progress == 30.0
    assert poll_with(envelope(progress="")).progress is None


def test_success_takes_the_video_from_result_url_with_no_cover() -> None:
    result = poll_with(envelope(status="SUCCESS", progress="100%", result_url=VENDOR_URL))
    assert result.video_url == VENDOR_URL
    assert result.cover_url is None


def test_older_builds_put_the_video_url_in_fail_reason_on_success() -> None:
    dto = {k: v for k, v in DTO.items() if k != "result_url"}
    body = {
        "code": "success",
        "message": "",
        "data": dto | {"status": "SUCCESS", "fail_reason": VENDOR_URL},
    }
    assert poll_with(body).video_url == VENDOR_URL


def test_success_without_any_url_falls_back_to_the_content_proxy() -> None:
    result = poll_with(envelope(status="SUCCESS", result_url="", fail_reason=""))
    assert result.video_url == f"{BASE}/v1/videos/{TASK_ID}/content"


def test_gemini_channels_answer_their_own_simple_shape() -> None:
    data = {"task_id": TASK_ID, "status": "succeeded", "url": VENDOR_URL, "format": "mp4"}
    body = {"code": "success", "message": "", "data": data | {"metadata": None, "error": None}}
    result = poll_with(body)
    assert (result.status, result.video_url) == (ProviderStatus.SUCCEEDED, VENDOR_URL)
    assert poll_with({"code": "success", "data": data | {"status": "processing"}}).status is (
        ProviderStatus.RUNNING
    )


def test_the_flat_documented_shape_is_read_too() -> None:
    result = poll_with({"task_id": TASK_ID, "status": "completed", "metadata": {"url": VENDOR_URL}})
    assert (result.status, result.video_url) == (ProviderStatus.SUCCEEDED, VENDOR_URL)


def test_failure_reports_the_fail_reason() -> None:
    result = poll_with(envelope(status="FAILURE", fail_reason="任务超时（1440分钟）"))
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.PROVIDER_FAILED
    assert result.error_message == "gateway: task failed: 任务超时（1440分钟）"


def test_an_unknown_status_is_running_with_a_warning_that_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vidqueue.providers.gateway")
    result = poll_with(envelope(status="PAUSED"))
    assert (result.status, result.raw_status) == (ProviderStatus.RUNNING, "PAUSED")
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "PAUSED" in record.getMessage()
    assert KEY.secret not in caplog.text


@pytest.mark.parametrize(
    "body",
    [{"code": "success", "data": {"task_id": TASK_ID}}, {"code": "success", "data": None}],
    ids=["no-status", "no-data"],
)
def test_an_unreadable_poll_answer_is_a_retryable_protocol_error(body: dict[str, Any]) -> None:
    with pytest.raises(RetryableError) as caught:
        poll_with(body)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_a_200_envelope_with_an_error_code_is_classified() -> None:
    with pytest.raises(PermanentError) as caught:
        poll_with({"code": "task_not_exist", "message": "task_not_exist", "data": None})
    assert caught.value.code == errors.PROVIDER_FAILED
    with pytest.raises(RetryableError):
        poll_with({"code": "get_task_failed", "message": "db down", "data": None})


# --- errors -----------------------------------------------------------------------------------

RETRYABLE, PERMANENT = RetryableError, PermanentError


@pytest.mark.parametrize(
    ("status", "body", "kind", "error_code"),
    [
        (400, task_error("task_not_exist"), PERMANENT, errors.PROVIDER_FAILED),
        (400, task_error("invalid_request"), PERMANENT, errors.INVALID_REQUEST),
        (400, task_error("invalid_seconds"), PERMANENT, errors.INVALID_REQUEST),
        (400, task_error("task_failed"), PERMANENT, errors.INVALID_REQUEST),
        (500, task_error("do_request_failed"), RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (502, task_error("fail_to_fetch_task"), RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (501, task_error("not_implemented"), PERMANENT, errors.INVALID_REQUEST),
        (401, middleware_error(""), PERMANENT, errors.AUTH_FAILED),
        (403, middleware_error("insufficient_user_quota"), PERMANENT, errors.INSUFFICIENT_BALANCE),
        (403, middleware_error("access_denied"), PERMANENT, errors.PERMISSION_DENIED),
        (503, middleware_error("model_not_found"), PERMANENT, errors.MODEL_NOT_FOUND),
        (400, middleware_error("sensitive_words_detected"), PERMANENT, errors.CONTENT_POLICY),
        (429, middleware_error("model_rate_limited"), RETRYABLE, errors.RATE_LIMITED),
        (429, task_error("fail_to_fetch_task", SATURATED), RETRYABLE, errors.CONCURRENCY_LIMITED),
    ],
)
def test_task_and_middleware_errors_are_classified_on_poll(
    status: int, body: dict[str, Any], kind: type[VidqueueError], error_code: str
) -> None:
    with pytest.raises(kind) as caught:
        poll_with(body, status)
    assert type(caught.value) is kind
    assert caught.value.code == error_code


def test_a_bare_429_honours_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "9"})

    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).submit(JOB_ID, spec(), KEY)
    assert (caught.value.code, caught.value.retry_after_s) == (errors.RATE_LIMITED, 9.0)


def test_a_saturated_group_on_submit_is_a_retryable_concurrency_limit() -> None:
    handler = answer(429, task_error("fail_to_fetch_task", SATURATED), {"Retry-After": "3"})
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).submit(JOB_ID, spec(), KEY)
    assert (caught.value.code, caught.value.retry_after_s) == (errors.CONCURRENCY_LIMITED, 3.0)


def test_error_messages_never_contain_the_token() -> None:
    body = middleware_error("", f"invalid token {KEY.secret}")
    with pytest.raises(PermanentError) as caught:
        poll_with(body, 401)
    assert KEY.secret not in str(caught.value)


# --- downloads, cancel, reconcile --------------------------------------------------------------


def test_the_token_goes_to_the_gateway_content_proxy_only() -> None:
    provider = provider_answering(answer(200, {}))
    proxy = f"{BASE}/v1/videos/{TASK_ID}/content"
    assert provider.download_headers(proxy, KEY) == {"Authorization": f"Bearer {KEY.secret}"}
    assert provider.download_headers(VENDOR_URL, KEY) == {}
    assert provider.download_headers("https://gateway.example.com.evil.io/v1/x", KEY) == {}


def test_cancel_and_reconcile_are_not_offered() -> None:
    provider = provider_answering(answer(200, {}))
    assert provider.cancel(TASK, KEY) is False
    assert provider.reconcile(JOB_ID, KEY) is None
    assert provider.idempotent_submit is False


def test_the_registry_builds_the_gateway_adapter() -> None:
    with httpx.Client() as client:
        assert isinstance(build(make_config(), client), GatewayProvider)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": None, "image": "https://a/1.png"}, "prompt"),
        ({"fps": 24}, "fps"),
        ({"quality": "pro"}, "quality"),
        ({"seed": 1}, "seed"),  # kling has no seed
        ({"model": "viduq1", "negative_prompt": "blur"}, "negative_prompt"),
        ({"with_audio": True}, "with_audio"),
        ({"options": {"model": "kling-v2"}}, "options.model"),
        ({"options": {"external_task_id": "mine"}}, "options.external_task_id"),
        ({"options": {"seed": 1}}, "options.seed"),
        ({"model": "viduq1", "seed": 1, "options": {"seed": 2}}, "options.seed"),
        (
            {"image": ["https://a/1", "https://a/2"], "options": {"image_tail": "x"}},
            "options.image_tail",
        ),
        ({"model": "sora-2", "options": {"style": "x"}}, "options.style"),
        ({"duration": 7}, "duration"),
        ({"size": "1792x1024"}, "size"),
        ({"model": "sora-2", "duration": 5}, "duration"),
        ({"model": "sora-2", "size": "1920x1080"}, "size"),
        ({"model": "sora-2", "image": ["https://a/1", "https://a/2"]}, "image"),
        ({"image": "file:///etc/passwd"}, "image"),
    ],
)
def test_what_the_model_cannot_take_is_rejected_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validator(make_config())(spec(**fields))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "kling-v1-6", "duration": 10, "size": "720x1280", "negative_prompt": "x"},
        {"model": "jimeng_vgfm_t2v_l20", "seed": 5, "options": {"req_key": "jimeng_vgfm_t2v_l20"}},
        {"model": "viduq2", "duration": 8, "options": {"movement_amplitude": "medium"}},
        {"model": "doubao-seedance-1-0-pro-250528", "options": {"ratio": "16:9", "frames": 121}},
        {"model": "sora-2-pro", "size": "1920x1080", "duration": 12},
    ],
)
def test_what_the_vendor_takes_is_accepted(fields: dict[str, Any]) -> None:
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


def simulated(**options: Any) -> tuple[GatewayProvider, httpx.Client, FakeClock]:
    clock = FakeClock()
    settings = {"gen_time_s": 10, "gen_jitter_s": 0, "seed": 1, "video_bytes": 4096} | options
    sim = TestClient(create_app(SimOptions(**settings), clock=clock), base_url="http://sim.test")

    def forward(request: httpx.Request) -> httpx.Response:
        headers = list(request.headers.multi_items())
        got = sim.request(
            request.method, str(request.url), headers=headers, content=request.content
        )
        return httpx.Response(got.status_code, headers=got.headers, content=got.content)

    client = httpx.Client(transport=httpx.MockTransport(forward), base_url="http://sim.test")
    return GatewayProvider(make_config("http://sim.test/gateway"), client), client, clock


@pytest.mark.parametrize(
    ("model", "proxied"), [("kling-v1", False), ("sora-2", True)], ids=["vendor-url", "proxy"]
)
def test_the_adapter_and_the_simulator_speak_the_same_format(model: str, proxied: bool) -> None:
    provider, client, clock = simulated()
    task = provider.submit(JOB_ID, spec(model=model, image="https://a/1.png"), KEY)
    assert task.id.startswith("task_")
    assert provider.poll(task, KEY).status is ProviderStatus.QUEUED
    clock.advance(5)
    assert provider.poll(task, KEY).progress == 50.0
    clock.advance(5)
    done = provider.poll(task, KEY)
    assert done.status is ProviderStatus.SUCCEEDED and done.video_url
    headers = provider.download_headers(done.video_url, KEY)
    assert bool(headers) is proxied
    if proxied:
        assert client.get(done.video_url).status_code == 401
    video = client.get(done.video_url, headers=headers)
    expected = client.get(f"/_sim/tasks/{task.id}/sha256").json()
    assert hashlib.sha256(video.content).hexdigest() == expected["video"]


def test_the_simulator_counts_kling_external_task_ids_and_refuses_a_repeat() -> None:
    provider, client, _ = simulated()
    provider.submit(JOB_ID, spec(), KEY)
    with pytest.raises(PermanentError):
        provider.submit(JOB_ID, spec(), KEY)
    stats = client.get("/_sim/stats").json()
    assert stats["request_ids"] == {JOB_ID: 1}
    assert stats["duplicate_request_ids"] == 1


def test_the_simulator_answers_a_key_over_its_limit_with_the_saturated_429() -> None:
    provider, client, _ = simulated(concurrency_limit=1)
    provider.submit(JOB_ID, spec(model="viduq1"), KEY)
    with pytest.raises(RetryableError) as caught:
        provider.submit("job-2", spec(model="viduq1"), KEY)
    assert caught.value.code == errors.CONCURRENCY_LIMITED
    assert client.get("/_sim/stats").json()["rate_limited_429"] == 1


def test_the_simulator_answers_an_unknown_task_with_task_not_exist() -> None:
    provider, _, _ = simulated()
    with pytest.raises(PermanentError) as caught:
        provider.poll(ProviderTask(id="task_nope"), KEY)
    assert "task_not_exist" in caught.value.message
