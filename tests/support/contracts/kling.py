"""Kling's wire data for the adapter contract: its ``CONTRACT`` and the answers it is built from."""

from __future__ import annotations

import base64
from typing import Any

from config.providers import ApiKey
from tests.support.adapter_contract import (
    JOB_ID,
    PNG,
    PNG_URI,
    Contract,
)
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError
from workers.domain.jobs import ProviderStatus
from workers.providers.base import ProviderTask
from workers.providers.kling import KlingProvider

BASE = "https://api-singapore.klingai.com"

P, R = PermanentError, RetryableError
ACCESS, SECRET = "AK-5a7c", "SK-SECRET-0b1d"


KEY = ApiKey(id="KLING_API_KEY", secret=f"{ACCESS}:{SECRET}")


NOW = 1_760_000_000.0


PNG_B64 = base64.b64encode(PNG).decode()


T2V_TASK = ProviderTask(id="CjhMgWd5", extra={"family": "text2video"})


CREATED = {"created_at": 1722769557708, "updated_at": 1722769857708}


VIDEO = {
    "id": "v-1",
    "url": "https://cdn.klingai.com/output.mp4",
    "watermark_url": "",
    "duration": "5.1",
}


def envelope(request_id: str = "req-1", **data: Any) -> dict[str, Any]:
    """A §5 answer; "…" placeholders filled with plausible values."""
    return {
        "code": 0,
        "message": "SUCCEED",
        "request_id": request_id,
        "data": {"task_id": "CjhMgWd5", **data},
    }


SUBMIT_OK = envelope(task_info={"external_task_id": JOB_ID}, task_status="submitted", **CREATED)


PROCESSING = envelope("req-2", task_status="processing", task_status_msg="", **CREATED)


SUCCEED = envelope("req-3", task_status="succeed", task_result={"videos": [VIDEO]}, **CREATED)


FAILED = envelope("req-4", task_status="failed", task_status_msg="content risk control")


SIMPLE_ZOOM = {"type": "simple", "config": {"zoom": 5}}


TWO = ["https://a/1.png", "https://a/2.png"]


def with_data(body: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {**body, "data": body["data"] | data}


def error_body(code: int | None, message: str = "provider says no") -> dict[str, Any]:
    return {"message": message} | ({} if code is None else {"code": code, "request_id": "req-err"})


def camera(**control: Any) -> dict[str, Any]:
    return {"options": {"camera_control": control}}


CONTRACT = C = Contract(
    kind="kling",
    adapter=KlingProvider,
    base_url=BASE,
    key=KEY,
    spec_defaults={"model": "kling-v1"},
    task=T2V_TASK,
    submit_path="/v1/videos/text2video",
    submit_ok=SUBMIT_OK,
    poll_path="/v1/videos/text2video/CjhMgWd5",
    poll_answer=lambda raw: with_data(SUCCEED, task_status=raw),
    statuses={
        "submitted": ProviderStatus.QUEUED,
        "processing": ProviderStatus.RUNNING,
        "succeed": ProviderStatus.SUCCEEDED,
        "failed": ProviderStatus.FAILED,
    },
    any_case=True,
    error_body=error_body,
    success=(SUCCEED, VIDEO["url"], None),
    finished_at=1722769857.708,  # updated_at, in milliseconds on the wire
    failure_saying=lambda text: with_data(FAILED, task_status_msg=text),
    failures=((FAILED, errors.PROVIDER_FAILED, "kling: the task failed: content risk control"),),
    no_task_id=(
        {"code": 0},
        {"code": 0, "data": {}},
        {"code": 0, "data": ["x"]},
        {"code": 0, "data": {"task_id": ""}},
    ),
    no_status=({"code": 0, "data": {"task_id": "x"}}, {"code": 0}),
    no_video=tuple(
        {
            **SUCCEED,
            "data": {k: v for k, v in SUCCEED["data"].items() if k != "task_result"} | result,
        }
        for result in (
            {},
            {"task_result": {}},
            {"task_result": {"videos": []}},
            {"task_result": {"videos": [{"url": ""}]}},
        )
    ),
    codes=(
        *((401, code, P, errors.AUTH_FAILED) for code in (1000, 1001, 1002, 1003, 1004)),
        *((429, code, P, errors.INSUFFICIENT_BALANCE) for code in (1100, 1101, 1102)),
        (403, 1103, P, errors.PERMISSION_DENIED),
        (400, 1200, P, errors.INVALID_REQUEST),
        (400, 1201, P, errors.INVALID_REQUEST),
        (404, 1202, P, errors.INVALID_REQUEST),
        (400, 1300, P, errors.CONTENT_POLICY),
        (400, 1301, P, errors.CONTENT_POLICY),
        (429, 1302, R, errors.RATE_LIMITED),
        (429, 1303, R, errors.CONCURRENCY_LIMITED),
        (429, 1304, P, errors.PERMISSION_DENIED),  # the caller's IP is not on the whitelist
        (500, 5000, R, errors.PROVIDER_UNAVAILABLE),
        (503, 5001, R, errors.PROVIDER_UNAVAILABLE),
        (504, 5002, R, errors.PROVIDER_UNAVAILABLE),
    ),
    rejects=(
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
        (camera(type="orbit"), "options.camera_control.type"),
        (camera(type="simple"), "options.camera_control.config"),
        (camera(type="simple", config={"zoom": 11}), "options.camera_control.config.zoom"),
        (camera(type="simple", config={"dolly": 1}), "options.camera_control.config.dolly"),
        (camera(type="simple", config={"zoom": 2, "pan": 1}), "options.camera_control.config"),
        (camera(type="simple", config={"zoom": 0}), "options.camera_control.config"),
        (camera(type="down_back", config={"zoom": 1}), "options.camera_control.config"),
        ({"model": "kling-v2-1", "image": TWO, **camera(**SIMPLE_ZOOM)}, "options.camera_control"),
    ),
    accepts=(
        {"prompt": "x" * 2500, "negative_prompt": "y" * 2500, "duration": 10},
        {"model": "kling-v2-6", "with_audio": True, "options": {"mode": "pro"}},
        {
            "options": {
                "cfg_scale": 0,
                "camera_control": {"type": "simple", "config": {"roll": -10}},
            }
        },
        camera(type="forward_up"),
        {"model": "kling-v1-5", "image": PNG_URI, **camera(**SIMPLE_ZOOM)},
        {"model": "kling-v2-1", "image": [TWO[0], PNG_URI]},
        {"options": {"watermark_info": {"enabled": False}, "callback_url": "https://x/cb"}},
    ),
    signs_with=SECRET,
    hidden=(ACCESS,),
    sends_job_id=True,
    duplicate=(400, error_body(1201, "external_task_id already exists"), P, errors.INVALID_REQUEST),
    reconciles=True,
    callbacks=(
        ({}, ("callback_url",)),
        ({"model": "kling-v1-5", "image": PNG_URI}, ("callback_url",)),  # image2video
    ),
    callback_option="callback_url",  # options are merged into the body
    sim_path="/kling",
    sim_failure="kling: the task failed: simulated failure: generation error",
    sim_over_limit=(errors.CONCURRENCY_LIMITED, "1303"),
    sim_key=ApiKey(id="SIM_KLING_KEY", secret="sim-kling-access:sim-kling-secret-test"),
)
