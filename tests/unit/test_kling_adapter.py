"""Contract tests of the Kling adapter against docs/wire-formats.md §5.

The HTTP seam is an ``httpx.MockTransport`` answering the exact JSON examples of §5; JWTs are
checked here with ``hmac`` directly. The last section runs the adapter against the simulator's
Kling router in-process, with a fake clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    ConfigError,
    InvalidSpec,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers import build, validator
from workers.providers.base import ProviderTask
from workers.providers.kling import KlingProvider

BASE = "https://api-singapore.klingai.com"
ACCESS, SECRET = "AK-5a7c", "SK-SECRET-0b1d"
KEY = ApiKey(id="KLING_API_KEY", secret=f"{ACCESS}:{SECRET}")
JOB_ID = "job-0f1e2d3c4b5a"
NOW = 1_760_000_000.0
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URI = "data:image/png;base64," + PNG_B64
T2V_TASK = ProviderTask(id="CjhMgWd5", extra={"family": "text2video"})

# The §5 examples; "…" placeholders filled with plausible values.
SUBMIT_OK = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "req-1",
    "data": {
        "task_id": "CjhMgWd5",
        "task_info": {"external_task_id": JOB_ID},
        "task_status": "submitted",
        "created_at": 1722769557708,
        "updated_at": 1722769557708,
    },
}
PROCESSING = {
    "code": 0,
    "request_id": "req-2",
    "data": {
        "task_id": "CjhMgWd5",
        "task_status": "processing",
        "task_status_msg": "",
        "created_at": 1722769557708,
        "updated_at": 1722769567708,
    },
}
SUCCEED = {
    "code": 0,
    "request_id": "req-3",
    "data": {
        "task_id": "CjhMgWd5",
        "task_status": "succeed",
        "task_result": {
            "videos": [
                {
                    "id": "v-1",
                    "url": "https://cdn.klingai.com/output.mp4",
                    "watermark_url": "",
                    "duration": "5.1",
                }
            ]
        },
        "final_unit_deduction": "1",
        "watermark_info": {"enabled": False},
        "created_at": 1722769557708,
        "updated_at": 1722769857708,
    },
}
FAILED = {
    "code": 0,
    "request_id": "req-4",
    "data": {
        "task_id": "CjhMgWd5",
        "task_status": "failed",
        "task_status_msg": "content risk control",
    },
}

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "kling",
        "kind": "kling",
        "base_url": BASE,
        "api_key_env": ["KLING_API_KEY"],
        "request_timeout_s": 12.5,
    }
    return ProviderConfig(**(fields | overrides))


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def provider_answering(
    handler: Handler, sent: list[httpx.Request] | None = None, clock: Clock | None = None
) -> KlingProvider:
    def record(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(record))
    return KlingProvider(make_config(), client, clock=clock or Clock())


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**({"provider": "kling", "model": "kling-v1"} | fields))


def submit_sending(job: JobSpec) -> tuple[httpx.Request, dict[str, Any]]:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, SUBMIT_OK), sent).submit(JOB_ID, job, KEY)
    assert len(sent) == 1
    return sent[0], json.loads(sent[0].content)


def error_body(code: int, message: str = "provider says no") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "req-err"}


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verified_claims(request: httpx.Request, secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of the request's bearer JWT, after checking its HS256 signature."""
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "Bearer"
    head, body, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(unb64(signature), expected)
    return json.loads(unb64(head)), json.loads(unb64(body))


# --- auth ---------------------------------------------------------------------------------------


def test_requests_carry_an_hs256_jwt_signed_with_the_secret_key() -> None:
    request, _ = submit_sending(spec(prompt="p"))
    header, claims = verified_claims(request, SECRET)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {"iss": ACCESS, "exp": int(NOW) + 1800, "nbf": int(NOW) - 5}


def test_the_token_is_reused_then_renewed_before_it_expires() -> None:
    clock, sent = Clock(), []
    provider = provider_answering(answer(200, PROCESSING), sent, clock)
    provider.poll(T2V_TASK, KEY)
    clock.now += 1499
    provider.poll(T2V_TASK, KEY)
    clock.now += 1
    provider.poll(T2V_TASK, KEY)
    tokens = [request.headers["authorization"] for request in sent]
    assert tokens[0] == tokens[1] != tokens[2]
    _, claims = verified_claims(sent[2], SECRET)
    assert claims["exp"] == int(NOW) + 1500 + 1800


def test_each_key_signs_its_own_tokens() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, PROCESSING), sent)
    other = ApiKey(id="KLING_API_KEY_2", secret="AK-2:SK-2")
    provider.poll(T2V_TASK, KEY)
    provider.poll(T2V_TASK, other)
    assert verified_claims(sent[0], SECRET)[1]["iss"] == ACCESS
    assert verified_claims(sent[1], "SK-2")[1]["iss"] == "AK-2"


@pytest.mark.parametrize("value", ["no-colon-here", ":secret-only", "access-only:"])
def test_a_key_without_access_and_secret_is_a_config_error_naming_the_variable(
    value: str,
) -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, SUBMIT_OK), sent)
    with pytest.raises(
        ConfigError, match="KLING_API_KEY must hold ACCESS_KEY:SECRET_KEY"
    ) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="KLING_API_KEY", secret=value))
    # It also fails the job at once, as a permanent error the pipeline understands.
    assert isinstance(caught.value, PermanentError)
    assert value not in str(caught.value)
    assert sent == []


# --- submit: the exact request ------------------------------------------------------------------


def test_text_to_video_posts_to_text2video_with_the_job_id_as_external_task_id() -> None:
    request, body = submit_sending(spec(prompt="a cat surfing"))
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/videos/text2video"
    assert request.headers["content-type"] == "application/json"
    assert request.extensions["timeout"]["read"] == 12.5
    assert body == {"model_name": "kling-v1", "prompt": "a cat surfing", "external_task_id": JOB_ID}


def test_every_text_to_video_field_comes_from_the_spec_or_its_options() -> None:
    options = {
        "mode": "pro",
        "aspect_ratio": "9:16",
        "cfg_scale": 0.7,
        "camera_control": {"type": "simple", "config": {"zoom": 5, "pan": 0}},
        "watermark_info": {"enabled": True},
        "callback_url": "https://hooks.example.com/kling",
    }
    job = spec(model="kling-v1-6", prompt="p", negative_prompt="blur", duration=10, options=options)
    _, body = submit_sending(job)
    assert body == {
        "model_name": "kling-v1-6",
        "prompt": "p",
        "negative_prompt": "blur",
        "duration": "10",
        **options,
        "external_task_id": JOB_ID,
    }


def test_duration_is_sent_as_a_string() -> None:
    _, body = submit_sending(spec(prompt="p", duration=5))
    assert body["duration"] == "5"


@pytest.mark.parametrize(("with_audio", "sound"), [(True, "on"), (False, "off")])
def test_kling_v2_6_takes_sound_from_with_audio(with_audio: bool, sound: str) -> None:
    _, body = submit_sending(spec(model="kling-v2-6", prompt="p", with_audio=with_audio))
    assert body["sound"] == sound


def test_older_models_send_no_sound_field_for_with_audio_false() -> None:
    _, body = submit_sending(spec(prompt="p", with_audio=False))
    assert "sound" not in body


def test_one_image_goes_to_image2video_with_the_data_prefix_stripped() -> None:
    request, body = submit_sending(spec(model="kling-v1-5", image=PNG_URI, prompt="move"))
    assert str(request.url) == f"{BASE}/v1/videos/image2video"
    assert body == {
        "model_name": "kling-v1-5",
        "prompt": "move",
        "image": PNG_B64,
        "external_task_id": JOB_ID,
    }


def test_two_images_are_image_and_image_tail_and_urls_pass_unchanged() -> None:
    images = ["https://example.com/first.png", PNG_URI]
    _, body = submit_sending(spec(model="kling-v2-1", image=images))
    assert body["image"] == "https://example.com/first.png"
    assert body["image_tail"] == PNG_B64
    assert "prompt" not in body


def test_spec_callback_url_is_vidqueues_own_webhook_and_never_sent_to_kling() -> None:
    _, body = submit_sending(spec(prompt="p", callback_url="https://producer.example.com/hook"))
    assert "callback_url" not in body


def test_submit_validates_before_sending_anything() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(InvalidSpec):
        provider_answering(answer(200, SUBMIT_OK), sent).submit(
            JOB_ID, spec(prompt="p", fps=24), KEY
        )
    assert sent == []


# --- submit: the answer -------------------------------------------------------------------------


def test_submit_returns_the_task_id_and_remembers_the_family() -> None:
    provider = provider_answering(answer(200, SUBMIT_OK))
    assert provider.submit(JOB_ID, spec(prompt="p"), KEY) == T2V_TASK
    image_task = provider.submit(JOB_ID, spec(image=PNG_URI), KEY)
    assert image_task == ProviderTask(id="CjhMgWd5", extra={"family": "image2video"})


@pytest.mark.parametrize(
    "body",
    [
        {"code": 0},
        {"code": 0, "data": {}},
        {"code": 0, "data": ["x"]},
        {"code": 0, "data": {"task_id": ""}},
    ],
    ids=["no-data", "no-task-id", "data-not-object", "empty-task-id"],
)
def test_a_200_without_a_task_id_is_an_unknown_outcome(body: dict[str, Any]) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(answer(200, body)).submit(JOB_ID, spec(prompt="p"), KEY)


def test_a_submit_lost_after_sending_is_an_unknown_outcome_and_never_idempotent() -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    provider = provider_answering(lost)
    assert provider.idempotent_submit is False
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit(JOB_ID, spec(prompt="p"), KEY)


def test_a_nonzero_code_in_a_200_answer_is_an_error() -> None:
    body = error_body(1303, "parallel task over resource pack limit")
    with pytest.raises(RetryableError) as caught:
        provider_answering(answer(200, body)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.code == errors.CONCURRENCY_LIMITED
    assert caught.value.message == (
        "kling: 1303: parallel task over resource pack limit (HTTP 200)"
    )


def test_an_unknown_nonzero_code_in_a_200_answer_is_a_protocol_error() -> None:
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(200, error_body(4242))).poll(T2V_TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


# --- poll ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["text2video", "image2video"])
def test_poll_asks_the_family_the_task_was_created_in(family: str) -> None:
    sent: list[httpx.Request] = []
    task = ProviderTask(id="CjhMgWd5", extra={"family": family})
    provider_answering(answer(200, PROCESSING), sent).poll(task, KEY)
    assert sent[0].method == "GET"
    assert str(sent[0].url) == f"{BASE}/v1/videos/{family}/CjhMgWd5"
    verified_claims(sent[0], SECRET)


def test_poll_without_a_recorded_family_is_a_permanent_protocol_error() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(200, PROCESSING), sent).poll(ProviderTask(id="x"), KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL
    assert sent == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [("submitted", ProviderStatus.QUEUED), ("processing", ProviderStatus.RUNNING)],
)
def test_poll_maps_the_unfinished_statuses(raw: str, status: ProviderStatus) -> None:
    body = {**PROCESSING, "data": PROCESSING["data"] | {"task_status": raw}}
    result = provider_answering(answer(200, body)).poll(T2V_TASK, KEY)
    assert result.status is status
    assert result.raw_status == raw


def test_succeed_gives_the_first_video_url_and_no_cover() -> None:
    result = provider_answering(answer(200, SUCCEED)).poll(T2V_TASK, KEY)
    assert result.status is ProviderStatus.SUCCEEDED
    assert result.video_url == "https://cdn.klingai.com/output.mp4"
    assert result.cover_url is None
    assert result.raw_status == "succeed"


@pytest.mark.parametrize("task_result", [None, {}, {"videos": []}, {"videos": [{"url": ""}]}])
def test_succeed_without_a_video_url_is_a_permanent_protocol_error(task_result: Any) -> None:
    data = {key: value for key, value in SUCCEED["data"].items() if key != "task_result"}
    if task_result is not None:
        data["task_result"] = task_result
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(200, {**SUCCEED, "data": data})).poll(T2V_TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_failed_reports_task_status_msg() -> None:
    result = provider_answering(answer(200, FAILED)).poll(T2V_TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.PROVIDER_FAILED
    assert result.error_message == "kling: the task failed: content risk control"


def test_an_unknown_status_is_running_with_a_warning_that_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vidqueue.providers.kling")
    body = {**PROCESSING, "data": PROCESSING["data"] | {"task_status": "rendering"}}
    result = provider_answering(answer(200, body)).poll(T2V_TASK, KEY)
    assert result.status is ProviderStatus.RUNNING
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "rendering" in record.getMessage()
    assert SECRET not in caplog.text and ACCESS not in caplog.text


@pytest.mark.parametrize(
    "body",
    [{"code": 0, "data": {"task_id": "x"}}, {"code": 0}, ["a"]],
    ids=["no-status", "no-data", "not-an-object"],
)
def test_an_unreadable_poll_answer_is_a_retryable_protocol_error(body: Any) -> None:
    with pytest.raises(RetryableError) as caught:
        provider_answering(answer(200, body)).poll(T2V_TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_result_urls_are_public_so_downloads_send_no_headers_and_cancel_is_unsupported() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, {}), sent)
    assert provider.download_headers("https://cdn.klingai.com/output.mp4", KEY) == {}
    assert provider.cancel(T2V_TASK, KEY) is False
    assert sent == []


# --- reconcile ----------------------------------------------------------------------------------


def listing(*items: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": "r", "data": list(items)}


def item(task_id: str, external: str | None) -> dict[str, Any]:
    info = {"external_task_id": external} if external else {}
    return {"task_id": task_id, "task_status": "processing", "task_info": info}


def test_reconcile_queries_each_family_by_external_task_id() -> None:
    sent: list[httpx.Request] = []
    assert provider_answering(answer(200, listing()), sent).reconcile(JOB_ID, KEY) is None
    assert [str(request.url) for request in sent] == [
        f"{BASE}/v1/videos/{family}?external_task_id={JOB_ID}&pageNum=1&pageSize=500"
        for family in ("text2video", "image2video")
    ]
    verified_claims(sent[0], SECRET)


def test_reconcile_finds_the_task_in_a_filtered_or_unfiltered_list() -> None:
    body = listing(item("other", "job-other"), item("t-1", None), item("mine", JOB_ID))
    found = provider_answering(answer(200, body)).reconcile(JOB_ID, KEY)
    assert found == ProviderTask(id="mine", extra={"family": "text2video"})


def test_reconcile_accepts_a_single_task_object_and_checks_it_is_the_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        family = request.url.path.rsplit("/", 1)[1]
        data = item("mine", JOB_ID if family == "image2video" else "someone-else")
        return httpx.Response(200, json={"code": 0, "data": data})

    found = provider_answering(handler).reconcile(JOB_ID, KEY)
    assert found == ProviderTask(id="mine", extra={"family": "image2video"})


def test_reconcile_raises_what_the_provider_answers() -> None:
    with pytest.raises(RetryableError):
        provider_answering(answer(500, error_body(5000))).reconcile(JOB_ID, KEY)


# --- errors -------------------------------------------------------------------------------------

RETRYABLE, PERMANENT = RetryableError, PermanentError


@pytest.mark.parametrize(
    ("status", "code", "kind", "error_code"),
    [
        (401, 1000, PERMANENT, errors.AUTH_FAILED),
        (401, 1001, PERMANENT, errors.AUTH_FAILED),
        (401, 1002, PERMANENT, errors.AUTH_FAILED),
        (401, 1003, PERMANENT, errors.AUTH_FAILED),
        (401, 1004, PERMANENT, errors.AUTH_FAILED),
        (429, 1100, PERMANENT, errors.INSUFFICIENT_BALANCE),
        (429, 1101, PERMANENT, errors.INSUFFICIENT_BALANCE),
        (429, 1102, PERMANENT, errors.INSUFFICIENT_BALANCE),
        (403, 1103, PERMANENT, errors.PERMISSION_DENIED),
        (400, 1200, PERMANENT, errors.INVALID_REQUEST),
        (400, 1201, PERMANENT, errors.INVALID_REQUEST),
        (404, 1202, PERMANENT, errors.INVALID_REQUEST),
        (400, 1300, PERMANENT, errors.CONTENT_POLICY),
        (400, 1301, PERMANENT, errors.CONTENT_POLICY),
        (429, 1302, RETRYABLE, errors.RATE_LIMITED),
        (429, 1303, RETRYABLE, errors.CONCURRENCY_LIMITED),
        (429, 1304, PERMANENT, errors.PERMISSION_DENIED),
        (500, 5000, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (503, 5001, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (504, 5002, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (502, None, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (429, None, RETRYABLE, errors.RATE_LIMITED),
    ],
)
def test_error_answers_are_classified_on_submit_and_poll(
    status: int, code: int | None, kind: type[VidqueueError], error_code: str
) -> None:
    body = error_body(code) if code is not None else {"message": "provider says no"}
    provider = provider_answering(answer(status, body))
    for call in (
        lambda: provider.submit(JOB_ID, spec(prompt="p"), KEY),
        lambda: provider.poll(T2V_TASK, KEY),
    ):
        with pytest.raises(kind) as caught:
            call()
        assert type(caught.value) is kind
        assert caught.value.code == error_code
        prefix = f"kling: {code}: " if code else f"kling: HTTP {status}: "
        assert caught.value.message.startswith(prefix + "provider says no")


def test_1203_is_a_missing_model_on_submit_and_a_missing_task_on_poll() -> None:
    provider = provider_answering(answer(404, error_body(1203)))
    with pytest.raises(PermanentError) as on_submit:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    with pytest.raises(PermanentError) as on_poll:
        provider.poll(T2V_TASK, KEY)
    assert on_submit.value.code == errors.MODEL_NOT_FOUND
    assert on_poll.value.code == errors.INVALID_REQUEST


@pytest.mark.parametrize(("header", "low", "high"), [(None, 1.0, 3.0), ("9", 9.0, 9.0)])
def test_concurrency_limit_backs_off_at_least_a_second(
    header: str | None, low: float, high: float
) -> None:
    headers = {"Retry-After": header} if header else None
    for _ in range(20):
        with pytest.raises(RetryableError) as caught:
            provider_answering(answer(429, error_body(1303), headers)).submit(
                JOB_ID, spec(prompt="p"), KEY
            )
        assert caught.value.retry_after_s is not None
        assert low <= caught.value.retry_after_s <= high


def test_error_messages_never_contain_the_secret_key() -> None:
    body = error_body(1002, f"token signed with {SECRET} is invalid")
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(401, body)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert SECRET not in str(caught.value)


# --- validation ---------------------------------------------------------------------------------

SIMPLE_ZOOM = {"type": "simple", "config": {"zoom": 5}}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "kling-v3"}, "model"),
        ({"model": "kling-v1-5"}, "model"),  # image-to-video only
        ({"size": "1280x720"}, "size"),
        ({"fps": 30}, "fps"),
        ({"quality": "pro"}, "quality"),
        ({"seed": 7}, "seed"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({"negative_prompt": "x" * 2501}, "negative_prompt"),
        ({"duration": 6}, "duration"),
        ({"with_audio": True}, "with_audio"),
        ({"model": "kling-v2-5-turbo", "with_audio": True}, "with_audio"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"options": {"mode": "turbo"}}, "options.mode"),
        ({"options": {"aspect_ratio": "4:3"}}, "options.aspect_ratio"),
        ({"image": PNG_URI, "options": {"aspect_ratio": "16:9"}}, "options.aspect_ratio"),
        ({"options": {"cfg_scale": 1.5}}, "options.cfg_scale"),
        ({"options": {"cfg_scale": "0.5"}}, "options.cfg_scale"),
        ({"model": "kling-v2-master", "options": {"cfg_scale": 0.5}}, "options.cfg_scale"),
        ({"options": {"watermark_info": True}}, "options.watermark_info"),
        ({"options": {"watermark_info": {"enabled": "yes"}}}, "options.watermark_info"),
        ({"options": {"callback_url": "not-a-url"}}, "options.callback_url"),
        ({"options": {"external_task_id": "mine"}}, "options.external_task_id"),
        ({"options": {"static_mask": "x"}}, "options.static_mask"),
        ({"options": {"camera_control": "zoom"}}, "options.camera_control"),
        ({"options": {"camera_control": {"type": "orbit"}}}, "options.camera_control.type"),
        ({"options": {"camera_control": {"type": "simple"}}}, "options.camera_control.config"),
        (
            {"options": {"camera_control": {"type": "simple", "config": {"zoom": 11}}}},
            "options.camera_control.config.zoom",
        ),
        (
            {"options": {"camera_control": {"type": "simple", "config": {"dolly": 1}}}},
            "options.camera_control.config.dolly",
        ),
        (
            {"options": {"camera_control": {"type": "simple", "config": {"zoom": 2, "pan": 1}}}},
            "options.camera_control.config",
        ),
        (
            {"options": {"camera_control": {"type": "simple", "config": {"zoom": 0}}}},
            "options.camera_control.config",
        ),
        (
            {"options": {"camera_control": {"type": "down_back", "config": {"zoom": 1}}}},
            "options.camera_control.config",
        ),
        (
            {
                "model": "kling-v2-1",
                "image": ["https://a/1.png", "https://a/2.png"],
                "options": {"camera_control": SIMPLE_ZOOM},
            },
            "options.camera_control",
        ),
    ],
)
def test_validation_rejects_what_kling_cannot_take_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validator(make_config())(spec(**({"prompt": "p"} | fields)))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "x" * 2500, "negative_prompt": "y" * 2500, "duration": 10},
        {"model": "kling-v2-6", "with_audio": True, "options": {"mode": "pro"}},
        {
            "options": {
                "cfg_scale": 0,
                "camera_control": {"type": "simple", "config": {"roll": -10}},
            }
        },
        {"options": {"camera_control": {"type": "forward_up"}}},
        {"model": "kling-v1-5", "image": PNG_URI, "options": {"camera_control": SIMPLE_ZOOM}},
        {"model": "kling-v2-1", "image": ["https://a/1.png", PNG_URI]},
        {"options": {"watermark_info": {"enabled": False}, "callback_url": "https://x/cb"}},
    ],
)
def test_validation_accepts_what_the_wire_format_allows(fields: dict[str, Any]) -> None:
    validator(make_config())(spec(**({"prompt": "p"} | fields)))


def test_the_registry_builds_the_kling_adapter() -> None:
    with httpx.Client() as client:
        assert isinstance(build(make_config(), client), KlingProvider)


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


SIM_KEY = ApiKey(id="SIM_KLING_KEY", secret="sim-kling-access:sim-kling-secret-test")
SIM_KEY_1 = ApiKey(id="SIM_KLING_KEY_1", secret="sim-kling-access-1:sim-kling-secret-1")
Sim = tuple[KlingProvider, FakeClock, TestClient]


@pytest.fixture
def sim() -> Iterator[Sim]:
    """The Kling adapter wired to an in-process simulator (10 s generations, fake clocks)."""
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
        config = make_config(base_url="http://sim.test/kling")
        yield KlingProvider(config, client, clock=clock.time), clock, backend


def test_the_simulator_runs_both_families_to_a_downloadable_video(sim: Sim) -> None:
    provider, clock, backend = sim
    text = provider.submit("job-text", spec(prompt="p", duration=5), SIM_KEY)
    image = provider.submit(
        "job-image", spec(model="kling-v2-1", image=[PNG_URI, PNG_URI]), SIM_KEY
    )
    assert provider.poll(text, SIM_KEY).status is ProviderStatus.QUEUED
    clock.advance(3)
    assert provider.poll(image, SIM_KEY).status is ProviderStatus.RUNNING
    clock.advance(8)
    for task in (text, image):
        done = provider.poll(task, SIM_KEY)
        assert done.status is ProviderStatus.SUCCEEDED and done.video_url is not None
        video = backend.get(done.video_url.removeprefix("http://sim.test")).content
        assert (
            hashlib.sha256(video).hexdigest()
            == backend.get(f"/_sim/tasks/{task.id}/sha256").json()["video"]
        )
    stats = backend.get("/_sim/stats").json()
    assert stats["submissions_by_key"] == {"sim-kling-access": 2}
    assert stats["request_ids"] == {"job-text": 1, "job-image": 1}


def test_the_simulator_finds_a_task_only_under_its_own_family(sim: Sim) -> None:
    provider, _, _ = sim
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    wrong = ProviderTask(id=task.id, extra={"family": "image2video"})
    with pytest.raises(PermanentError):
        provider.poll(wrong, SIM_KEY)


def test_the_simulator_reconciles_by_external_task_id_per_key(sim: Sim) -> None:
    provider, _, _ = sim
    provider.submit("job-a", spec(prompt="p"), SIM_KEY)
    task = provider.submit(JOB_ID, spec(image=PNG_URI), SIM_KEY)
    provider.submit("job-b", spec(prompt="p"), SIM_KEY)
    assert provider.reconcile(JOB_ID, SIM_KEY) == task
    assert provider.reconcile("job-never-sent", SIM_KEY) is None
    assert provider.reconcile(JOB_ID, SIM_KEY_1) is None  # another account's task list


def test_the_simulator_refuses_and_counts_a_repeated_external_task_id(sim: Sim) -> None:
    provider, _, backend = sim
    provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    with pytest.raises(PermanentError) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    assert caught.value.code == errors.INVALID_REQUEST
    stats = backend.get("/_sim/stats").json()
    assert stats["duplicate_request_ids"] == 1
    assert stats["request_ids"] == {JOB_ID: 1}


def test_the_simulator_limits_concurrency_per_access_key_with_1303(sim: Sim) -> None:
    provider, clock, backend = sim
    backend.post("/_sim/options", json={"concurrency_limit": 1})
    provider.submit("job-1", spec(prompt="p"), SIM_KEY)
    provider.submit("job-2", spec(prompt="p"), SIM_KEY_1)
    with pytest.raises(RetryableError) as caught:
        provider.submit("job-3", spec(prompt="p"), SIM_KEY)
    assert caught.value.code == errors.CONCURRENCY_LIMITED
    clock.advance(11)
    provider.submit("job-3", spec(prompt="p"), SIM_KEY)


def test_the_simulator_reports_failures_and_injected_errors_as_kling_does(sim: Sim) -> None:
    provider, clock, backend = sim
    backend.post("/_sim/options", json={"fail_rate": 1.0})
    task = provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
    clock.advance(11)
    failed = provider.poll(task, SIM_KEY)
    assert failed.status is ProviderStatus.FAILED
    assert failed.error_message == "kling: the task failed: simulated failure: generation error"
    backend.post("/_sim/options", json={"poll_error_rate": 1.0, "submit_error_rate": 1.0})
    with pytest.raises(RetryableError):
        provider.poll(task, SIM_KEY)
    with pytest.raises(RetryableError):
        provider.submit("job-2", spec(prompt="p"), SIM_KEY)


def sign(claims: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head = part({"alg": alg, "typ": "JWT"}) + "." + part(claims)
    digest = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


WALL = 1_800_000_000


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 1001),
        ("Bearer ", 1001),
        ("Bearer not.a.jwt", 1002),
        (
            "Bearer "
            + sign({"iss": "sim-kling-access", "exp": WALL + 60, "nbf": WALL - 5}, "wrong"),
            1002,
        ),
        ("Bearer " + sign({"iss": "stranger", "exp": WALL + 60, "nbf": WALL - 5}, "x"), 1002),
        (
            "Bearer "
            + sign({"iss": "sim-kling-access", "exp": WALL + 60}, "sim-kling-secret-test", "HS512"),
            1002,
        ),
        (
            "Bearer "
            + sign(
                {"iss": "sim-kling-access", "exp": WALL + 60, "nbf": WALL + 30},
                "sim-kling-secret-test",
            ),
            1003,
        ),
        (
            "Bearer "
            + sign(
                {"iss": "sim-kling-access", "exp": WALL - 1, "nbf": WALL - 60},
                "sim-kling-secret-test",
            ),
            1004,
        ),
    ],
    ids=[
        "missing",
        "empty",
        "garbage",
        "bad-signature",
        "unknown-iss",
        "wrong-alg",
        "not-yet",
        "expired",
    ],
)
def test_the_simulator_checks_the_jwt(sim: Sim, authorization: str | None, code: int) -> None:
    _, _, backend = sim
    headers = {"Authorization": authorization} if authorization else {}
    reply = backend.get("/kling/v1/videos/text2video", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["code"] == code
    assert set(reply.json()) == {"code", "message", "request_id"}


def test_the_simulator_accepts_registered_key_pairs(sim: Sim) -> None:
    provider, _, backend = sim
    backend.post("/kling/_sim/keys", json={"access_key": "ak-new", "secret_key": "sk-new"})
    task = provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="K", secret="ak-new:sk-new"))
    assert backend.get("/_sim/stats").json()["submissions_by_key"] == {"ak-new": 1}
    assert task.extra == {"family": "text2video"}


@pytest.mark.parametrize(
    ("family", "body", "status", "code"),
    [
        ("text2video", {"prompt": "p", "duration": 5}, 400, 1201),
        ("text2video", {"model_name": "kling-v9", "prompt": "p"}, 404, 1203),
        ("text2video", {"negative_prompt": "n"}, 400, 1201),
        ("image2video", {"image": PNG_URI}, 400, 1201),
        ("image2video", {"prompt": "p"}, 400, 1201),
        (
            "text2video",
            {"model_name": "kling-v2-master", "prompt": "p", "cfg_scale": 0.5},
            400,
            1201,
        ),
        ("text2video", {"prompt": "p", "sound": "on"}, 400, 1201),
        (
            "text2video",
            {"prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 1, "pan": 1}}},
            400,
            1201,
        ),
        (
            "image2video",
            {"image": PNG_B64, "image_tail": PNG_B64, "camera_control": {"type": "down_back"}},
            400,
            1201,
        ),
        ("text2image", {"prompt": "p"}, 404, 1202),
    ],
)
def test_the_simulator_refuses_bad_bodies_with_klings_codes(
    sim: Sim, family: str, body: dict[str, Any], status: int, code: int
) -> None:
    provider, _, backend = sim
    headers = {"Authorization": f"Bearer {provider.token(SIM_KEY)}"}
    reply = backend.post(f"/kling/v1/videos/{family}", json=body, headers=headers)
    assert reply.status_code == status
    assert reply.json()["code"] == code
