"""Ark's wire data for the adapter contract: its ``CONTRACT`` and the answers it is built from."""

from __future__ import annotations

from typing import Any

from config.providers import ApiKey
from tests.support.adapter_contract import PNG_URI, Contract
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError
from workers.domain.jobs import ProviderStatus
from workers.providers.ark import ArkProvider
from workers.providers.base import ProviderTask

BASE = "https://ark.cn-beijing.volces.com/api/v3"

P, R = PermanentError, RetryableError


KEY = ApiKey(id="ARK_API_KEY", secret="ark-SECRET-3f9a")


MODEL = "doubao-seedance-1-5-pro-251215"


TASK_ID = "cgt-20260101123456-abcde"


TASK_URL = f"{BASE}/contents/generations/tasks/{TASK_ID}"


VIDEO_URL = "https://ark-content-generation-…tos…/x.mp4"


RUNNING = {
    "id": "cgt-…",
    "model": MODEL,
    "status": "running",
    "created_at": 1760000000,
    "updated_at": 1760000010,
}


SUCCEEDED = {
    "id": "cgt-…",
    "model": "…",
    "status": "succeeded",
    "content": {"video_url": VIDEO_URL, "last_frame_url": None},
    "usage": {"completion_tokens": 108900, "total_tokens": 108900},
    **{"seed": 1276, "resolution": "720p", "ratio": "16:9", "duration": 5, "framespersecond": 24},
    **{"service_tier": "default", "execution_expires_after": 172800, "generate_audio": True},
    **{"created_at": 1760000000, "updated_at": 1760000300},
}


FAILED = {
    "id": "cgt-…",
    "status": "failed",
    "error": {"code": "OutputVideoSensitiveContentDetected", "message": "…"},
}


EXPIRED = "ark: the task expired (execution_expires_after) before it finished"


TWO = ["https://a/1.png", "https://a/2.png"]


def error_body(
    code: str | None, message: str = "provider says no", param: str = ""
) -> dict[str, Any]:
    body = {"code": code or "", "message": f"{message} Request ID: 2026…", "param": param}
    return {"error": body | {"type": "BadRequest"}}


def poll_answer(raw: str) -> dict[str, Any]:
    return (SUCCEEDED if raw.lower() == "succeeded" else RUNNING) | {"status": raw}


def roles(*names: str, images: list[str] | str = TWO) -> dict[str, Any]:
    return {"image": images, "options": {"image_roles": list(names)}}


CONTRACT = C = Contract(
    kind="ark",
    adapter=ArkProvider,
    base_url=BASE,
    key=KEY,
    spec_defaults={"model": MODEL},
    task=ProviderTask(id=TASK_ID),
    submit_path="/contents/generations/tasks",
    submit_ok={"id": TASK_ID},
    poll_path=f"/contents/generations/tasks/{TASK_ID}",
    poll_answer=poll_answer,
    statuses={
        "queued": ProviderStatus.QUEUED,
        "running": ProviderStatus.RUNNING,
        "succeeded": ProviderStatus.SUCCEEDED,
        "failed": ProviderStatus.FAILED,
        "expired": ProviderStatus.FAILED,  # execution_expires_after passed before it ran
        "cancelled": ProviderStatus.CANCELLED,
    },
    any_case=True,
    error_body=error_body,
    success=(SUCCEEDED, VIDEO_URL, None),
    finished_at=1760000300.0,  # updated_at of the terminal answer
    failure_saying=lambda text: (
        FAILED | {"error": {"code": "InternalServiceError", "message": text}}
    ),
    failures=(
        (FAILED, errors.CONTENT_POLICY, "ark: OutputVideoSensitiveContentDetected: …"),
        (
            FAILED | {"error": {"code": "InternalServiceError", "message": "boom"}},
            errors.PROVIDER_FAILED,
            "ark: InternalServiceError: boom",
        ),
        ({"status": "failed"}, errors.PROVIDER_FAILED, "ark: the task failed (no detail)"),
        (RUNNING | {"status": "expired"}, errors.TIMEOUT, EXPIRED),
    ),
    no_task_id=({}, {"id": ""}),
    no_status=({"id": "cgt-1"},),
    no_video=tuple(
        {"status": "succeeded"} | ({} if content is None else {"content": content})
        for content in (None, {}, {"video_url": ""}, "https://tos/x.mp4")
    ),
    codes=(
        (400, "MissingParameter", P, errors.INVALID_REQUEST),
        (400, "InvalidParameter", P, errors.INVALID_REQUEST),
        (400, "InvalidEndpoint.ClosedEndpoint", P, errors.INVALID_REQUEST),
        (400, "InputTextSensitiveContentDetected", P, errors.CONTENT_POLICY),
        (400, "InputImageSensitiveContentDetected.PrivacyInformation", P, errors.CONTENT_POLICY),
        (401, "AuthenticationError", P, errors.AUTH_FAILED),
        (403, "AccountOverdueError", P, errors.INSUFFICIENT_BALANCE),
        (403, "AccessDenied", P, errors.PERMISSION_DENIED),
        (404, "InvalidEndpointOrModel.NotFound", P, errors.MODEL_NOT_FOUND),
        (404, "ModelNotOpen", P, errors.MODEL_NOT_FOUND),
        (429, "RateLimitExceeded.EndpointRPMExceeded", R, errors.RATE_LIMITED),
        (429, "RateLimitExceeded.EndpointTPMExceeded", R, errors.RATE_LIMITED),
        (429, "RateLimitExceeded", R, errors.RATE_LIMITED),
        (429, "ModelAccountRpmRateLimitExceeded", R, errors.RATE_LIMITED),
        (429, "ServerOverloaded", R, errors.RATE_LIMITED),
        (429, "QuotaExceeded", R, errors.QUOTA_EXCEEDED),
        (500, "InternalServiceError", R, errors.PROVIDER_UNAVAILABLE),
        (503, "ServiceUnavailable", R, errors.PROVIDER_UNAVAILABLE),
    ),
    rejects=(
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
        (roles("last_frame", "first_frame"), "options.image_roles"),
        (roles("first_frame", "reference_image"), "options.image_roles"),
        (roles("last_frame", images=TWO[0]), "options.image_roles"),
        ({"model": "doubao-seedance-1-0-lite-t2v", "image": TWO[0]}, "image"),
        ({"model": "doubao-seedance-1-0-lite-i2v"}, "image"),
    ),
    accepts=(
        {"duration": 3},
        {"duration": 12, "seed": -1, "with_audio": False},
        {"options": {"frames": 29, "execution_expires_after": 259200, "ratio": "9:21"}},
        {"image": PNG_URI, "model": "doubao-seedance-1-0-lite-i2v"},
        roles("reference_image", images=TWO[0]),
        {"model": "ep-20260101-abcd", "options": {"resolution": "480p"}},
    ),
    cancels=True,
    callbacks=(
        ({}, ("callback_url",)),
        ({"model": "doubao-seedance-1-0-lite-i2v", "image": TWO}, ("callback_url",)),
    ),
    callback_option="callback_url",  # options are merged into the body
    sim_path="/ark/api/v3",
    sim_failure="ark: InternalServiceError: simulated failure",
    sim_over_limit=(errors.RATE_LIMITED, "RateLimitExceeded"),
)
