"""OpenAI's wire data for the adapter contract: its ``CONTRACT`` and the answers behind it."""

from __future__ import annotations

import base64
from typing import Any

from config.providers import ApiKey
from tests.support.adapter_contract import PNG_URI, Contract
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError
from workers.domain.jobs import ProviderStatus
from workers.providers.base import ProviderTask
from workers.providers.openai import OpenAIProvider

BASE = "https://api.openai.com/v1"

P, R = PermanentError, RetryableError


KEY = ApiKey(id="OPENAI_API_KEY", secret="sk-proj-SECRET0123456789abcdef")


JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 16


JPEG_URI = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()


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


COMPLETED = VIDEO | {"status": "completed", "progress": 100, "completed_at": 1760000300}


FAILED = VIDEO | {"status": "failed", "error": {"code": "moderation_blocked", "message": "…"}}


CONTENT = f"{BASE}/videos/video_abc/content"


def error_body(code: str | None, message: str = "provider says no") -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


CONTRACT = C = Contract(
    kind="openai",
    adapter=OpenAIProvider,
    base_url=BASE,
    key=KEY,
    spec_defaults={"model": "sora-2", "prompt": "a cat"},
    task=ProviderTask(id="video_abc"),
    submit_path="/videos",
    submit_ok=VIDEO,
    poll_path="/videos/video_abc",
    poll_answer=lambda raw: (COMPLETED if raw == "completed" else VIDEO) | {"status": raw},
    statuses={
        "queued": ProviderStatus.QUEUED,
        "in_progress": ProviderStatus.RUNNING,
        "completed": ProviderStatus.SUCCEEDED,
        "failed": ProviderStatus.FAILED,
    },
    any_case=False,
    error_body=error_body,
    success=(COMPLETED, CONTENT, f"{CONTENT}?variant=thumbnail"),
    finished_at=1760000300.0,  # completed_at
    failure_saying=lambda text: FAILED | {"error": {"code": "internal_error", "message": text}},
    failures=(
        (FAILED, errors.CONTENT_POLICY, "openai: moderation_blocked: …"),
        (
            FAILED | {"error": {"code": "internal_error", "message": "boom"}},
            errors.PROVIDER_FAILED,
            "openai: internal_error: boom",
        ),
        (
            FAILED | {"error": None},
            errors.PROVIDER_FAILED,
            "openai: failed: the video failed (no detail given)",
        ),
    ),
    no_task_id=(VIDEO | {"id": None}, {"object": "video"}),
    no_status=({"id": "video_abc"},),
    codes=(
        (400, "invalid_value", P, errors.INVALID_REQUEST),
        (400, "moderation_blocked", P, errors.CONTENT_POLICY),
        (401, "invalid_api_key", P, errors.AUTH_FAILED),
        (404, "not_found", P, errors.INVALID_REQUEST),
        (404, "model_not_found", P, errors.MODEL_NOT_FOUND),
        (409, None, R, errors.PROVIDER_UNAVAILABLE),  # the SDK retries a conflict like a 5xx
        (422, None, P, errors.INVALID_REQUEST),
        (429, "rate_limit_exceeded", R, errors.RATE_LIMITED),
        (429, "insufficient_quota", P, errors.INSUFFICIENT_BALANCE),
        (429, "billing_hard_limit_reached", P, errors.INSUFFICIENT_BALANCE),
    ),
    rejects=(
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
    ),
    accepts=(
        {"model": "sora-2-pro", "size": "1920x1080", "duration": 12},
        {"model": "sora-2-pro-2025-10-06", "size": "1080x1920"},
        {"model": "sora-2-2025-12-08", "size": "1792x1024", "duration": 4},
        {"image": PNG_URI, "size": "720x1280"},
    ),
    download_key=True,
    callbacks=(({}, None), ({"model": "sora-2-pro", "image": "https://a/1.png"}, None)),
    sim_path="/openai/v1",
    sim_failure="openai: video_generation_failed: simulated generation failure",
    sim_over_limit=(errors.RATE_LIMITED, "rate_limit_exceeded"),
)
