"""Zhipu's wire data for the adapter contract: its ``CONTRACT`` and the answers it is built from."""

from __future__ import annotations

from typing import Any

from config.providers import ApiKey
from tests.support.adapter_contract import (
    JOB_ID,
    PNG_URI,
    Contract,
)
from workers.domain import errors
from workers.domain.errors import DuplicateSubmission, PermanentError, RetryableError
from workers.domain.jobs import ProviderStatus
from workers.providers.base import ProviderTask
from workers.providers.zhipu import ZhipuProvider

KEY = ApiKey(id="ZHIPUAI_API_KEY", secret="sk-SECRET-0123456789.abcdef")

P, R = PermanentError, RetryableError
URL_1, URL_2 = "https://a/1.png", "https://a/2.png"


VIDEO = {"url": "https://…/x.mp4", "cover_image_url": "https://…/x_cover.png"}


VQ1 = {"model": "viduq1-text"}  # a Vidu model, with rules of its own


SUBMIT_OK = {"model": "cogvideox-3", "id": "8856", "request_id": "r", "task_status": "PROCESSING"}


NO_DETAIL = "zhipu: the task failed (task_status FAIL, no detail given)"


UNSAFE = {"code": "1301", "message": "unsafe content"}


def poll_answer(raw: str, **fields: Any) -> dict[str, Any]:
    """A §1 poll answer; a SUCCESS carries the documented ``video_result``."""
    body = {"model": "cogvideox-3", "request_id": "req-123", "task_status": raw}
    return body | ({"video_result": [VIDEO]} if raw.upper() == "SUCCESS" else {}) | fields


def error_body(code: str | int | None, message: str = "provider says no") -> dict[str, Any]:
    return {"error": {"message": message} | ({} if code is None else {"code": code})}


CONTRACT = C = Contract(
    kind="zhipu",
    adapter=ZhipuProvider,
    base_url="https://open.bigmodel.cn/api/paas/v4",
    key=KEY,
    spec_defaults={"model": "cogvideox-3"},
    task=ProviderTask(id="8856"),
    submit_path="/videos/generations",
    submit_ok=SUBMIT_OK,
    poll_path="/async-result/8856",
    poll_answer=poll_answer,
    statuses={
        "SUBMITTED": ProviderStatus.QUEUED,  # seen only in an SDK example
        "PROCESSING": ProviderStatus.RUNNING,
        "SUCCESS": ProviderStatus.SUCCEEDED,
        "FAIL": ProviderStatus.FAILED,
    },
    any_case=True,
    error_body=error_body,
    success=(poll_answer("SUCCESS"), VIDEO["url"], VIDEO["cover_image_url"]),
    finished_at=None,  # §1 has no finish time
    failure_saying=lambda text: poll_answer("FAIL", error={"message": text}),
    failures=(
        (poll_answer("FAIL"), errors.PROVIDER_FAILED, NO_DETAIL),
        (poll_answer("FAIL", error=UNSAFE), errors.PROVIDER_FAILED, "zhipu: 1301: unsafe content"),
    ),
    no_task_id=({"model": "cogvideox-3", "request_id": JOB_ID, "task_status": "PROCESSING"},),
    no_status=({"model": "cogvideox-3"},),
    no_video=tuple(
        {"task_status": "SUCCESS"} | ({} if results is None else {"video_result": results})
        for results in (None, [], [{}], [{"url": ""}], ["https://cdn/x.mp4"])
    ),
    sends_job_id=True,
    duplicate=(400, error_body("1231"), DuplicateSubmission, errors.SUBMIT_UNKNOWN),
    idempotent=True,
    codes=(
        (503, "1234", R, errors.PROVIDER_UNAVAILABLE),
        (429, "1302", R, errors.CONCURRENCY_LIMITED),
        (429, "1303", R, errors.RATE_LIMITED),
        (429, "1305", R, errors.RATE_LIMITED),
        (429, "1312", R, errors.RATE_LIMITED),
        (429, "1304", R, errors.QUOTA_EXCEEDED),
        (429, "1113", P, errors.INSUFFICIENT_BALANCE),
        (429, "1112", P, errors.PERMISSION_DENIED),
        (429, "1120", P, errors.PERMISSION_DENIED),
        (401, "1002", P, errors.AUTH_FAILED),
        (400, "1000", P, errors.AUTH_FAILED),
        (434, None, P, errors.PERMISSION_DENIED),
        (435, None, P, errors.INVALID_REQUEST),
        (400, "1301", P, errors.CONTENT_POLICY),
        (400, "1211", P, errors.MODEL_NOT_FOUND),
        (400, "1261", P, errors.INVALID_REQUEST),
        (400, "1210", P, errors.INVALID_REQUEST),
        (400, "1214", P, errors.INVALID_REQUEST),
    ),
    rejects=(
        ({"model": "cogvideox-flash", "quality": "speed"}, "quality"),
        ({"model": "cogvideox-flash", "size": "1920x1080"}, "size"),
        ({"model": "cogvideox-flash", "fps": 30}, "fps"),
        ({"model": "cogvideox-9"}, "model"),
        ({"quality": "best"}, "quality"),
        ({"fps": 24}, "fps"),
        ({"duration": 6}, "duration"),
        ({"size": "720x480"}, "size"),  # cogvideox-2 only
        ({"model": "cogvideox-2", "size": "1280x720"}, "size"),  # cogvideox-3 only
        ({"seed": 7}, "seed"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"prompt": "x" * 513}, "prompt"),
        ({"options": {"colour": "red"}}, "options.colour"),
        ({"options": {"style": "anime"}}, "options.style"),  # a vidu option
        ({"options": {"request_id": "mine-123"}}, "options.request_id"),
        ({"options": {"user_id": "abc"}}, "options.user_id"),
        ({"options": {"watermark_enabled": "no"}}, "options.watermark_enabled"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"image": [URL_1, URL_2], "quality": "quality"}, "image"),  # two frames need "speed"
        ({**VQ1, "options": {"movement_amplitude": "huge"}}, "options.movement_amplitude"),
        ({**VQ1, "options": {"style": "noir"}}, "options.style"),
        ({**VQ1, "options": {"aspect_ratio": 1.78}}, "options.aspect_ratio"),
        ({**VQ1, "options": {"aspect_ratio": "4:3"}}, "options.aspect_ratio"),
        ({**VQ1, "options": {"off_peak": "yes"}}, "options.off_peak"),
        ({**VQ1, "image": URL_1}, "image"),
        ({"model": "vidu2-image"}, "image"),
        ({"model": "vidu2-start-end", "image": URL_1}, "image"),
    ),
    accepts=(
        {"prompt": "x" * 512},
        {"size": "3840x2160", "fps": 60, "duration": 10, "quality": "quality"},
        {"image": [URL_1, URL_2]},
        {"image": [URL_1, PNG_URI], "quality": "speed"},
        {"with_audio": True, "options": {"user_id": "user-42", "off_peak": False}},
        {"model": "cogvideox-2", "size": "720x480"},
        {"model": "cogvideox-3", "size": "1280x720"},
        {"model": "viduq1-text"},
        {"model": "viduq1-image", "image": URL_1},
        {"model": "viduq1-start-end", "image": [URL_1, URL_2]},
        {"model": "vidu2-reference", "image": [URL_1, URL_2]},
    ),
    callbacks=(({}, None), ({"model": "viduq1-image", "image": URL_1}, None)),
    sim_path="/zhipu/api/paas/v4",
    sim_failure="zhipu: the task failed (task_status FAIL, no detail given)",
    sim_over_limit=(errors.CONCURRENCY_LIMITED, "1302"),
    sim_first=ProviderStatus.RUNNING,  # Zhipu has no queued state
)
