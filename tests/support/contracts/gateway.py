"""The gateway's wire data for the adapter contract: its ``CONTRACT`` and its answers."""

from __future__ import annotations

from typing import Any

from config.providers import ApiKey
from tests.support.adapter_contract import Contract
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError
from workers.domain.jobs import ProviderStatus
from workers.providers.base import ProviderTask
from workers.providers.gateway import GatewayProvider

BASE = "https://gateway.example.com"

P, R = PermanentError, RetryableError


KEY = ApiKey(id="GATEWAY_TOKEN", secret="sk-GATEWAY-SECRET-0123456789")


TASK_ID = "task_Ab12cd34Ef56gh78Ij90kl12Mn34op56"


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


DTO: dict[str, Any] = {
    **{"id": 42, "created_at": 1760000000, "updated_at": 1760000030, "task_id": TASK_ID},
    **{"platform": "kling", "user_id": 1, "group": "default", "channel_id": 3, "quota": 5000},
    **{"action": "textGenerate", "status": "IN_PROGRESS", "fail_reason": "", "result_url": ""},
    **{"submit_time": 1760000000, "start_time": 1760000010, "finish_time": 0},
    **{"progress": "30%", "properties": {}, "data": {}},
}


VENDOR_URL = "https://v1-kling.klingai.com/bs2/upload-ylab-stunt/abc.mp4?x-kcdn-pid=1"


SATURATED = "当前分组上游负载已饱和，请稍后再试"


TIMED_OUT = "任务超时（1440分钟）"


def envelope(**dto: Any) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": DTO | dto}


def task_error(code: str, message: str = "provider says no") -> dict[str, Any]:
    return {"code": code, "message": message, "data": None}


def middleware_error(code: str | None, message: str = "provider says no") -> dict[str, Any]:
    full = f"{message} (request id: 20260801123456789)"
    return {"error": {"message": full, "type": "new_api_error", "code": code or ""}}


FAILED = envelope(status="FAILURE", fail_reason=TIMED_OUT)


IMAGES = ["https://a/1.png", "https://a/2.png"]


SEEDANCE = "doubao-seedance-1-0-pro-250528"


CONTRACT = C = Contract(
    kind="gateway",
    adapter=GatewayProvider,
    base_url=BASE,
    key=KEY,
    spec_defaults={"model": "kling-v1", "prompt": "a cat"},
    task=ProviderTask(id=TASK_ID),
    submit_path="/v1/video/generations",
    submit_ok=SUBMIT_OK,
    poll_path=f"/v1/video/generations/{TASK_ID}",
    poll_answer=lambda raw: envelope(status=raw, result_url=VENDOR_URL),
    statuses={
        **dict.fromkeys(("NOT_START", "SUBMITTED", "QUEUED", "queued"), ProviderStatus.QUEUED),
        **dict.fromkeys(
            ("IN_PROGRESS", "UNKNOWN", "in_progress", "processing"), ProviderStatus.RUNNING
        ),
        **dict.fromkeys(("SUCCESS", "completed", "succeeded"), ProviderStatus.SUCCEEDED),
        **dict.fromkeys(("FAILURE", "failed"), ProviderStatus.FAILED),
    },
    any_case=False,
    error_body=middleware_error,
    success=(
        envelope(status="SUCCESS", result_url=VENDOR_URL, finish_time=1760000300),
        VENDOR_URL,
        None,
    ),
    finished_at=1760000300.0,  # the TaskDto's finish_time
    failure_saying=lambda text: envelope(status="FAILURE", fail_reason=text),
    failures=((FAILED, errors.PROVIDER_FAILED, f"gateway: task failed: {TIMED_OUT}"),),
    no_task_id=({"object": "video"},),
    no_status=(
        {"code": "success", "data": {"task_id": TASK_ID}},
        {"code": "success", "data": None},
    ),
    codes=(
        (400, task_error("task_not_exist"), P, errors.PROVIDER_FAILED),
        (400, task_error("invalid_request"), P, errors.INVALID_REQUEST),
        (400, task_error("invalid_seconds"), P, errors.INVALID_REQUEST),
        (400, task_error("task_failed"), P, errors.INVALID_REQUEST),
        (500, task_error("do_request_failed"), R, errors.PROVIDER_UNAVAILABLE),
        (502, task_error("fail_to_fetch_task"), R, errors.PROVIDER_UNAVAILABLE),
        (501, task_error("not_implemented"), P, errors.INVALID_REQUEST),
        (403, middleware_error("insufficient_user_quota"), P, errors.INSUFFICIENT_BALANCE),
        (403, middleware_error("pre_consume_token_quota_failed"), P, errors.INSUFFICIENT_BALANCE),
        (403, middleware_error("access_denied"), P, errors.PERMISSION_DENIED),
        (503, middleware_error("model_not_found"), P, errors.MODEL_NOT_FOUND),
        (400, middleware_error("sensitive_words_detected"), P, errors.CONTENT_POLICY),
        (429, middleware_error("model_rate_limited"), R, errors.RATE_LIMITED),
        (429, task_error("fail_to_fetch_task", SATURATED), R, errors.CONCURRENCY_LIMITED),
    ),
    codes_on_submit=False,  # on a submit, do_request_failed means the outcome is unknown
    rejects=(
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
        ({"image": IMAGES, "options": {"image_tail": "x"}}, "options.image_tail"),
        ({"model": "sora-2", "options": {"style": "x"}}, "options.style"),
        ({"duration": 7}, "duration"),
        ({"size": "1792x1024"}, "size"),
        ({"model": "sora-2", "duration": 5}, "duration"),
        ({"model": "sora-2", "size": "1920x1080"}, "size"),
        ({"model": "sora-2", "image": IMAGES}, "image"),
        ({"image": "file:///etc/passwd"}, "image"),
    ),
    accepts=(
        {"model": "kling-v1-6", "duration": 10, "size": "720x1280", "negative_prompt": "x"},
        {"model": "jimeng_vgfm_t2v_l20", "seed": 5, "options": {"req_key": "jimeng_vgfm_t2v_l20"}},
        {"model": "viduq2", "duration": 8, "options": {"movement_amplitude": "medium"}},
        {"model": SEEDANCE, "options": {"ratio": "16:9", "frames": 121}},
        {"model": "sora-2-pro", "size": "1920x1080", "duration": 12},
    ),
    sends_job_id=True,  # for Kling models, as metadata.external_task_id
    duplicate=(
        400,
        task_error("task_failed", "external_task_id already exists"),
        P,
        errors.INVALID_REQUEST,
    ),
    download_key=True,
    # Options become `metadata`; only the Kling, Vidu and Doubao vendors read its callback_url.
    callbacks=(
        ({}, ("metadata", "callback_url")),  # kling-v1
        ({"model": "kling-v2-1", "image": IMAGES}, ("metadata", "callback_url")),
        ({"model": "viduq2"}, ("metadata", "callback_url")),
        ({"model": SEEDANCE}, ("metadata", "callback_url")),  # doubao
        ({"model": "seedance-1-0-lite"}, ("metadata", "callback_url")),  # doubao by prefix
        ({"model": "jimeng_vgfm_t2v_l20"}, None),
        ({"model": "sora-2"}, None),
        ({"model": "hailuo-02"}, None),  # a family vidqueue does not know: passed through
    ),
    callback_option="callback_url",
    sim_path="/gateway",
    sim_failure="gateway: task failed: simulated generation failure",
    sim_over_limit=(errors.CONCURRENCY_LIMITED, "负载已饱和"),
)
