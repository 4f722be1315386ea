"""Contract tests of the Zhipu adapter against the wire format (docs/wire-formats.md §1).

One module's edge cases, so the HTTP seam is an ``httpx.MockTransport``: each test states what
Zhipu answers and checks the exact request sent or the domain value / error returned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from config.providers import ApiKey, ProviderConfig
from workers.domain import errors
from workers.domain.errors import (
    ConfigError,
    DuplicateSubmission,
    InvalidSpec,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers import build, validator
from workers.providers.base import ProviderTask
from workers.providers.zhipu import DAILY_LIMIT_RETRY_S, ZhipuProvider

BASE = "https://open.bigmodel.cn/api/paas/v4"
KEY = ApiKey(id="ZHIPUAI_API_KEY", secret="sk-SECRET-0123456789.abcdef")
JOB_ID = "job-0f1e2d3c4b5a"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
SUBMIT_OK = {
    "model": "cogvideox-3",
    "id": "8856…",
    "request_id": "req-123",
    "task_status": "PROCESSING",
}
TASK = ProviderTask(id="8856")

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "zhipu",
        "kind": "zhipu",
        "base_url": BASE,
        "api_key_env": ["ZHIPUAI_API_KEY"],
        "request_timeout_s": 12.5,
    }
    return ProviderConfig(**(fields | overrides))


def provider_answering(handler: Handler, sent: list[httpx.Request] | None = None) -> ZhipuProvider:
    def record(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return handler(request)

    return ZhipuProvider(make_config(), httpx.Client(transport=httpx.MockTransport(record)))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def answer_text(status: int, text: str) -> Handler:
    return lambda request: httpx.Response(status, text=text)


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**({"provider": "zhipu", "model": "cogvideox-3"} | fields))


def submit_sending(job: JobSpec) -> tuple[httpx.Request, dict[str, Any]]:
    sent: list[httpx.Request] = []
    provider_answering(answer(200, SUBMIT_OK), sent).submit(JOB_ID, job, KEY)
    assert len(sent) == 1
    return sent[0], json.loads(sent[0].content)


def error_body(code: str | int, message: str = "provider says no") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# --- submit: the exact request ----------------------------------------------------------------


def test_text_to_video_submit_sends_every_field_with_the_job_id_as_request_id() -> None:
    # Given a text-to-video spec setting every Zhipu field
    job = spec(
        prompt="a cat surfing",
        quality="quality",
        with_audio=True,
        size="1920x1080",
        fps=60,
        duration=10,
        options={"user_id": "user-42", "watermark_enabled": False, "off_peak": True},
    )
    # When it is submitted
    request, body = submit_sending(job)
    # Then one JSON POST goes to /videos/generations with bearer auth and exactly these fields
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/videos/generations"
    assert request.headers["authorization"] == f"Bearer {KEY.secret}"
    assert request.headers["content-type"] == "application/json"
    assert body == {
        "model": "cogvideox-3",
        "prompt": "a cat surfing",
        "quality": "quality",
        "with_audio": True,
        "size": "1920x1080",
        "fps": 60,
        "duration": 10,
        "user_id": "user-42",
        "watermark_enabled": False,
        "off_peak": True,
        "request_id": JOB_ID,
    }


def test_submit_uses_the_configured_request_timeout() -> None:
    request, _ = submit_sending(spec(prompt="p"))
    assert request.extensions["timeout"] == {
        "connect": 12.5,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }


def test_fields_the_spec_leaves_unset_are_left_out_of_the_body() -> None:
    _, body = submit_sending(spec(model="cogvideox-flash", prompt="p"))
    assert body == {"model": "cogvideox-flash", "prompt": "p", "request_id": JOB_ID}


def test_image_to_video_with_a_url_sends_image_url_as_a_string() -> None:
    _, body = submit_sending(spec(image="https://example.com/a.jpg", prompt="move"))
    assert body["image_url"] == "https://example.com/a.jpg"
    assert body["prompt"] == "move"


def test_image_to_video_with_a_base64_data_uri_sends_it_unchanged() -> None:
    _, body = submit_sending(spec(image=PNG_URI))
    assert body == {"model": "cogvideox-3", "image_url": PNG_URI, "request_id": JOB_ID}


def test_a_list_of_one_image_is_sent_as_a_string() -> None:
    _, body = submit_sending(spec(image=["https://example.com/a.png"]))
    assert body["image_url"] == "https://example.com/a.png"


def test_two_images_are_sent_as_first_and_last_frame_list() -> None:
    first, last = "https://example.com/first.png", PNG_URI
    _, body = submit_sending(spec(image=[first, last], quality="speed"))
    assert body["image_url"] == [first, last]
    assert body["quality"] == "speed"


def test_vidu_options_pass_through_into_the_body() -> None:
    options = {"style": "anime", "aspect_ratio": "9:16", "movement_amplitude": "large"}
    _, body = submit_sending(spec(model="viduq1-text", prompt="p", duration=5, options=options))
    assert body == {
        "model": "viduq1-text",
        "prompt": "p",
        "duration": 5,
        **options,
        "request_id": JOB_ID,
    }


def test_submit_validates_the_spec_before_sending_anything() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, SUBMIT_OK), sent)
    with pytest.raises(InvalidSpec):
        provider.submit(JOB_ID, spec(prompt="p", fps=24), KEY)
    assert sent == []


# --- submit: the answer ---------------------------------------------------------------------


def test_submit_returns_the_task_id_from_the_documented_response() -> None:
    task = provider_answering(answer(200, SUBMIT_OK)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert task == ProviderTask(id="8856…")


def test_submit_answered_200_without_an_id_is_an_unknown_outcome() -> None:
    body = {"model": "cogvideox-3", "request_id": JOB_ID, "task_status": "PROCESSING"}
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(answer(200, body)).submit(JOB_ID, spec(prompt="p"), KEY)


def test_submit_answered_200_with_garbage_is_an_unknown_outcome() -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        provider_answering(answer_text(200, "<html>oops")).submit(JOB_ID, spec(prompt="p"), KEY)


def test_duplicate_request_id_1231_on_submit_raises_duplicate_submission() -> None:
    provider = provider_answering(answer(400, error_body("1231", "duplicate request")))
    with pytest.raises(DuplicateSubmission, match="zhipu: 1231: duplicate request"):
        provider.submit(JOB_ID, spec(prompt="p"), KEY)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("Connection reset by peer"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_submit_failing_after_the_request_was_sent_is_an_unknown_outcome(
    failure: httpx.TransportError,
) -> None:
    provider = provider_answering(_raising(failure))
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.__cause__ is failure


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.PoolTimeout("no connection available"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_submit_that_never_reached_zhipu_is_retryable(failure: httpx.TransportError) -> None:
    provider = provider_answering(_raising(failure))
    with pytest.raises(RetryableError) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


def test_poll_read_timeout_is_retryable() -> None:
    provider = provider_answering(_raising(httpx.ReadTimeout("timed out")))
    with pytest.raises(RetryableError) as caught:
        provider.poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


def _raising(exc: httpx.TransportError) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


# --- poll -----------------------------------------------------------------------------------


def test_poll_gets_async_result_of_the_task_with_bearer_auth() -> None:
    sent: list[httpx.Request] = []
    provider = provider_answering(answer(200, {"task_status": "PROCESSING"}), sent)
    provider.poll(TASK, KEY)
    assert sent[0].method == "GET"
    assert str(sent[0].url) == f"{BASE}/async-result/8856"
    assert sent[0].headers["authorization"] == f"Bearer {KEY.secret}"
    assert sent[0].extensions["timeout"]["read"] == 12.5


def test_poll_processing_is_running() -> None:
    body = {"model": "cogvideox-3", "request_id": "req-123", "task_status": "PROCESSING"}
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.status is ProviderStatus.RUNNING
    assert result.raw_status == "PROCESSING"
    assert result.video_url is None


def test_poll_submitted_is_queued() -> None:
    result = provider_answering(answer(200, {"task_status": "SUBMITTED"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.QUEUED


def test_poll_success_gives_the_video_and_cover_urls() -> None:
    body = {
        "model": "cogvideox-3",
        "request_id": "req-123",
        "task_status": "SUCCESS",
        "video_result": [
            {"url": "https://…/x.mp4", "cover_image_url": "https://…/x_cover.png"},
        ],
    }
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.status is ProviderStatus.SUCCEEDED
    assert result.video_url == "https://…/x.mp4"
    assert result.cover_url == "https://…/x_cover.png"
    assert result.raw_status == "SUCCESS"


def test_poll_success_without_a_cover_still_succeeds() -> None:
    body = {"task_status": "SUCCESS", "video_result": [{"url": "https://cdn/x.mp4"}]}
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.video_url == "https://cdn/x.mp4"
    assert result.cover_url is None


@pytest.mark.parametrize(
    "video_result",
    [None, [], [{}], [{"url": ""}], ["https://cdn/x.mp4"]],
    ids=["missing", "empty", "no-url", "empty-url", "not-an-object"],
)
def test_poll_success_without_a_video_url_is_a_permanent_protocol_error(
    video_result: Any,
) -> None:
    body: dict[str, Any] = {"task_status": "SUCCESS"}
    if video_result is not None:
        body["video_result"] = video_result
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(200, body)).poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_poll_fail_is_failed_with_provider_failed() -> None:
    body = {"model": "cogvideox-3", "request_id": "req-123", "task_status": "FAIL"}
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.status is ProviderStatus.FAILED
    assert result.error_code == errors.PROVIDER_FAILED
    assert result.error_message is not None
    assert result.error_message.startswith("zhipu: ")
    assert result.raw_status == "FAIL"


def test_poll_fail_carrying_a_detail_reports_it() -> None:
    body = {"task_status": "FAIL", "error": {"code": "1301", "message": "unsafe content"}}
    result = provider_answering(answer(200, body)).poll(TASK, KEY)
    assert result.error_message == "zhipu: 1301: unsafe content"


def test_poll_unknown_status_is_running_with_a_warning_that_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vidqueue.providers.zhipu")
    result = provider_answering(answer(200, {"task_status": "WEIRD"})).poll(TASK, KEY)
    assert result.status is ProviderStatus.RUNNING
    assert result.raw_status == "WEIRD"
    [record] = caplog.records
    assert record.name == "vidqueue.providers.zhipu"
    assert record.levelno == logging.WARNING
    assert "WEIRD" in record.getMessage()
    assert KEY.secret not in caplog.text


@pytest.mark.parametrize(
    "handler",
    [
        answer_text(200, "{not json"),
        answer(200, ["a", "list"]),
        answer(200, {"model": "cogvideox-3"}),
    ],
    ids=["malformed", "not-an-object", "no-task-status"],
)
def test_poll_unreadable_answer_is_a_retryable_protocol_error(handler: Handler) -> None:
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


def test_result_urls_are_public_so_downloads_send_no_headers() -> None:
    provider = provider_answering(answer(200, {}))
    assert provider.download_headers("https://sfile.chatglm.cn/x.mp4", KEY) == {}


# --- error classification ------------------------------------------------------------------

RETRYABLE, PERMANENT = RetryableError, PermanentError


@pytest.mark.parametrize(
    ("status", "code", "kind", "error_code"),
    [
        (500, None, RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (503, "1234", RETRYABLE, errors.PROVIDER_UNAVAILABLE),
        (429, "1302", RETRYABLE, errors.CONCURRENCY_LIMITED),
        (429, "1303", RETRYABLE, errors.RATE_LIMITED),
        (429, "1305", RETRYABLE, errors.RATE_LIMITED),
        (429, "1312", RETRYABLE, errors.RATE_LIMITED),
        (429, "1304", RETRYABLE, errors.QUOTA_EXCEEDED),
        (429, "1113", PERMANENT, errors.INSUFFICIENT_BALANCE),
        (429, "1112", PERMANENT, errors.PERMISSION_DENIED),
        (429, "1120", PERMANENT, errors.PERMISSION_DENIED),
        (429, None, RETRYABLE, errors.RATE_LIMITED),
        (401, None, PERMANENT, errors.AUTH_FAILED),
        (401, "1002", PERMANENT, errors.AUTH_FAILED),
        (400, "1000", PERMANENT, errors.AUTH_FAILED),
        (434, None, PERMANENT, errors.PERMISSION_DENIED),
        (435, None, PERMANENT, errors.INVALID_REQUEST),
        (400, "1301", PERMANENT, errors.CONTENT_POLICY),
        (400, "1211", PERMANENT, errors.MODEL_NOT_FOUND),
        (400, "1261", PERMANENT, errors.INVALID_REQUEST),
        (400, "1210", PERMANENT, errors.INVALID_REQUEST),
        (400, "1214", PERMANENT, errors.INVALID_REQUEST),
        (400, None, PERMANENT, errors.INVALID_REQUEST),
        (404, None, PERMANENT, errors.INVALID_REQUEST),
        (400, "1231", PERMANENT, errors.INVALID_REQUEST),  # a duplicate only matters on submit
    ],
)
def test_poll_error_answers_are_classified(
    status: int, code: str | None, kind: type[VidqueueError], error_code: str
) -> None:
    body = error_body(code) if code is not None else {"error": {"message": "provider says no"}}
    with pytest.raises(kind) as caught:
        provider_answering(answer(status, body)).poll(TASK, KEY)
    assert type(caught.value) is kind
    assert caught.value.code == error_code
    assert "provider says no" in caught.value.message
    assert caught.value.message.startswith(f"zhipu: {code}: " if code else f"zhipu: HTTP {status}")


@pytest.mark.parametrize(
    ("status", "code", "error_code"),
    [(400, "1301", errors.CONTENT_POLICY), (429, "1302", errors.CONCURRENCY_LIMITED)],
)
def test_submit_error_answers_are_classified_like_poll(
    status: int, code: str, error_code: str
) -> None:
    provider = provider_answering(answer(status, error_body(code)))
    with pytest.raises(VidqueueError) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.code == error_code


@pytest.mark.parametrize("code", ["1301", 1301], ids=["string", "int"])
def test_error_envelope_code_may_be_a_string_or_an_int(code: str | int) -> None:
    body = error_body(code, "The content contains sensitive words")
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(400, body)).poll(TASK, KEY)
    assert caught.value.code == errors.CONTENT_POLICY
    assert caught.value.message == ("zhipu: 1301: The content contains sensitive words (HTTP 400)")


def test_bare_429_honours_retry_after_seconds() -> None:
    handler = answer(429, None, {"Retry-After": "17"})
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.code == errors.RATE_LIMITED
    assert caught.value.retry_after_s == 17.0


def test_concurrency_limit_honours_an_http_date_retry_after() -> None:
    handler = answer(429, error_body("1302"), {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.code == errors.CONCURRENCY_LIMITED
    assert caught.value.retry_after_s == 0.0  # a date in the past: try again now


def test_daily_limit_waits_long_whatever_retry_after_says() -> None:
    handler = answer(429, error_body("1304"), {"Retry-After": "5"})
    with pytest.raises(RetryableError) as caught:
        provider_answering(handler).poll(TASK, KEY)
    assert caught.value.retry_after_s == DAILY_LIMIT_RETRY_S


def test_error_messages_never_contain_the_api_key() -> None:
    # Given a provider that echoes the key back in its error message
    body = error_body("1000", f"invalid api key {KEY.secret}")
    # When the error is classified, Then the key is redacted
    with pytest.raises(PermanentError) as caught:
        provider_answering(answer(401, body)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert KEY.secret not in str(caught.value)
    assert "[redacted]" in str(caught.value)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["quality", "size", "fps"])
def test_cogvideox_flash_rejects_quality_size_and_fps_naming_the_field(field: str) -> None:
    value = {"quality": "speed", "size": "1920x1080", "fps": 30}[field]
    with pytest.raises(InvalidSpec, match="cogvideox-flash does not take it") as caught:
        _validate(spec(model="cogvideox-flash", prompt="p", **{field: value}))
    assert caught.value.field == field


def test_unknown_model_is_rejected_listing_the_models() -> None:
    with pytest.raises(InvalidSpec, match="cogvideox-3") as caught:
        _validate(spec(model="cogvideox-9", prompt="p"))
    assert caught.value.field == "model"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"quality": "best"}, "quality"),
        ({"fps": 24}, "fps"),
        ({"duration": 6}, "duration"),
        ({"size": "720x480"}, "size"),  # cogvideox-2 only
        ({"seed": 7}, "seed"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"prompt": "x" * 513}, "prompt"),
        ({"options": {"colour": "red"}}, "options.colour"),
        ({"options": {"style": "anime"}}, "options.style"),  # a vidu option
        ({"options": {"request_id": "mine-123"}}, "options.request_id"),
        ({"options": {"user_id": "abc"}}, "options.user_id"),
        ({"options": {"watermark_enabled": "no"}}, "options.watermark_enabled"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"image": ["https://a/1.png", "https://a/2.png"], "quality": "quality"}, "image"),
    ],
)
def test_cogvideox_3_rejects_what_it_cannot_take_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        _validate(spec(**({"prompt": "p"} | fields)))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "x" * 512},
        {"size": "3840x2160", "fps": 60, "duration": 10, "quality": "quality"},
        {"image": ["https://a/1.png", "https://a/2.png"]},
        {"image": ["https://a/1.png", PNG_URI], "quality": "speed"},
        {"with_audio": True, "options": {"user_id": "user-42", "off_peak": False}},
    ],
)
def test_cogvideox_3_accepts_what_the_wire_format_allows(fields: dict[str, Any]) -> None:
    _validate(spec(**({"prompt": "p"} | fields)))


def test_size_lists_differ_between_cogvideox_2_and_3() -> None:
    _validate(spec(model="cogvideox-2", prompt="p", size="720x480"))
    _validate(spec(model="cogvideox-3", prompt="p", size="1280x720"))
    with pytest.raises(InvalidSpec, match="720x480") as caught:
        _validate(spec(model="cogvideox-2", prompt="p", size="1280x720"))
    assert caught.value.field == "size"


@pytest.mark.parametrize(
    ("model", "images", "ok"),
    [
        ("viduq1-text", [], True),
        ("viduq1-text", ["https://a/1.png"], False),
        ("viduq1-image", ["https://a/1.png"], True),
        ("vidu2-image", [], False),
        ("viduq1-start-end", ["https://a/1.png", "https://a/2.png"], True),
        ("vidu2-start-end", ["https://a/1.png"], False),
        ("vidu2-reference", ["https://a/1.png", "https://a/2.png"], True),
    ],
)
def test_vidu_models_check_how_many_images_they_take(
    model: str, images: list[str], ok: bool
) -> None:
    job = spec(model=model, prompt="p", image=images or None)
    if ok:
        _validate(job)
    else:
        with pytest.raises(InvalidSpec) as caught:
            _validate(job)
        assert caught.value.field == "image"


def test_vidu_option_values_are_checked() -> None:
    with pytest.raises(InvalidSpec, match="16:9") as caught:
        _validate(spec(model="viduq1-text", prompt="p", options={"aspect_ratio": "4:3"}))
    assert caught.value.field == "options.aspect_ratio"


def _anon() -> ZhipuProvider:
    return provider_answering(answer(200, {}))


def _validate(job: JobSpec) -> None:
    _anon().validate(job)


# --- registry ------------------------------------------------------------------------------


def test_registry_builds_the_zhipu_adapter_for_kind_zhipu() -> None:
    with httpx.Client() as client:
        provider = build(make_config(), client)
    assert isinstance(provider, ZhipuProvider)
    assert provider.idempotent_submit is True


def test_registry_validator_needs_no_http_client() -> None:
    check = validator(make_config())
    check(spec(prompt="p"))
    with pytest.raises(InvalidSpec):
        check(spec(prompt="p", fps=24))


def test_registry_refuses_a_kind_without_an_adapter() -> None:
    config = make_config().model_copy(update={"kind": "nope"})  # skips validation on purpose
    with pytest.raises(ConfigError, match="nope"):
        validator(config)


# --- legacy id.secret keys: a JWT instead of the key -----------------------------------------

LEGACY = ApiKey(id="ZHIPUAI_API_KEY", secret="0123456789abcdef0123456789abcdef.AbCdEfGh12345678")
LEGACY_ID, LEGACY_SECRET = LEGACY.secret.split(".")
START = 1_760_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _legacy_provider(sent: list[httpx.Request], clock: Clock) -> ZhipuProvider:
    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"id": "8856", "task_status": "PROCESSING"})

    client = httpx.Client(transport=httpx.MockTransport(record))
    return ZhipuProvider(make_config(auth="jwt"), client, clock=clock)


def _unb64(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _verified(request: httpx.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "Bearer"
    head, body, signature = token.split(".")
    digest = hmac.new(LEGACY_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return _unb64(head), _unb64(body)


def test_by_default_even_an_id_dot_secret_key_is_sent_as_it_is() -> None:
    sent: list[httpx.Request] = []
    client = httpx.Client(
        transport=httpx.MockTransport(
            lambda r: sent.append(r) or httpx.Response(200, json={"task_status": "PROCESSING"})
        )
    )
    ZhipuProvider(make_config(), client).poll(TASK, LEGACY)
    assert sent[0].headers["authorization"] == f"Bearer {LEGACY.secret}"


def test_an_id_dot_secret_key_is_sent_as_a_signed_jwt_never_raw() -> None:
    # Given a key of Zhipu's own <id>.<secret> form, and auth = "jwt"
    sent: list[httpx.Request] = []
    # When a poll is sent with it
    _legacy_provider(sent, Clock()).poll(TASK, LEGACY)
    # Then the bearer is a JWT signed with the secret, as the SDK's legacy mode makes it
    header, claims = _verified(sent[0])
    assert header == {"alg": "HS256", "sign_type": "SIGN"}
    now_ms = int(START * 1000)
    assert claims == {"api_key": LEGACY_ID, "exp": now_ms + 210_000, "timestamp": now_ms}
    assert LEGACY_SECRET not in sent[0].headers["authorization"]


def test_the_legacy_token_is_cached_and_renewed_before_its_210_s_run_out() -> None:
    sent: list[httpx.Request] = []
    clock = Clock()
    provider = _legacy_provider(sent, clock)
    provider.poll(TASK, LEGACY)
    clock.now += 179
    provider.submit(JOB_ID, spec(prompt="p"), LEGACY)
    clock.now += 1
    provider.poll(TASK, LEGACY)
    first, second, third = (request.headers["authorization"] for request in sent)
    assert first == second != third
    assert _verified(sent[2])[1]["timestamp"] == int((START + 180) * 1000)


@pytest.mark.parametrize(
    "secret",
    ["sk-SECRET-0123456789.abcdef", "plainkey", "a.b.c", ".secret", "id.", "id.sec ret"],
)
def test_keys_of_any_other_form_are_sent_raw(secret: str) -> None:
    sent: list[httpx.Request] = []
    _legacy_provider(sent, Clock()).poll(TASK, ApiKey(id="K", secret=secret))
    assert sent[0].headers["authorization"] == f"Bearer {secret}"


# --- Vidu and first/last frames ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["viduq1-start-end", "vidu2-start-end"])
def test_vidu_start_end_sends_first_and_last_frame_as_a_list(model: str) -> None:
    first, last = "https://example.com/first.png", PNG_URI
    _, body = submit_sending(spec(model=model, prompt="p", image=[first, last]))
    assert body == {"model": model, "prompt": "p", "image_url": [first, last], "request_id": JOB_ID}


def test_vidu_image_options_pass_through_into_the_body() -> None:
    options = {"movement_amplitude": "small", "style": "general", "watermark_enabled": True}
    _, body = submit_sending(spec(model="vidu2-image", image=PNG_URI, duration=4, options=options))
    assert body == {
        "model": "vidu2-image",
        "image_url": PNG_URI,
        "duration": 4,
        **options,
        "request_id": JOB_ID,
    }


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"movement_amplitude": "huge"}, "options.movement_amplitude"),
        ({"style": "noir"}, "options.style"),
        ({"aspect_ratio": 1.78}, "options.aspect_ratio"),
        ({"off_peak": "yes"}, "options.off_peak"),
    ],
)
def test_vidu_option_values_are_checked_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        _validate(spec(model="viduq1-text", prompt="p", options=options))
    assert caught.value.field == field


def test_cogvideox_first_and_last_frame_takes_only_quality_speed() -> None:
    images = ["https://a/1.png", "https://a/2.png"]
    _validate(spec(model="cogvideox-3", image=images))
    with pytest.raises(InvalidSpec, match="speed") as caught:
        _validate(spec(model="cogvideox-3", image=images, quality="quality"))
    assert caught.value.field == "image"
