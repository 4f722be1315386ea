"""OpenAI Videos API (Sora 2).

Wire format: docs/wire-formats.md §2 (openai-python's videos resource and the video guide).
``POST /videos`` takes no idempotency id, so a submit whose outcome is unknown must never be sent
again (``idempotent_submit = False``): the pipeline parks it for reconciliation instead. The
result is not a public URL but ``GET /videos/{id}/content``, which needs the API key — so
``download_headers`` sends it, and only to this provider's own base URL. What a spec may hold,
and the submit built from it: ``workers.providers.openai_spec``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx

from workers.domain import errors
from workers.domain.errors import (
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import JsonAdapter, SubmitRequest
from workers.providers.base import ProviderTask, VideoProvider
from workers.providers.http import HttpFailure
from workers.providers.http import under_base_url as under_base_url
from workers.providers.openai_spec import request_content, validate

logger = logging.getLogger("vidqueue.providers.openai")

POLL_AFTER_HEADER: Final = "openai-poll-after-ms"

_STATUSES: Final = {
    "queued": ProviderStatus.QUEUED,
    "in_progress": ProviderStatus.RUNNING,
    "completed": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
}
_PERMANENT_CODES: Final = {
    "moderation_blocked": errors.CONTENT_POLICY,
    "insufficient_quota": errors.INSUFFICIENT_BALANCE,  # comes as HTTP 429: waiting will not pay
    "billing_hard_limit_reached": errors.INSUFFICIENT_BALANCE,
    "model_not_found": errors.MODEL_NOT_FOUND,
    "invalid_api_key": errors.AUTH_FAILED,
}


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """OpenAI's error codes (docs/wire-formats.md §2); None leaves the generic status rules."""
    message = failure.describe()
    if submitting and failure.status == 504:
        # A gateway timeout after the request went out: OpenAI may have created the video.
        return SubmitOutcomeUnknown(f"{message}; the video may have been created")
    if failure.code in _PERMANENT_CODES:
        return PermanentError(message, code=_PERMANENT_CODES[failure.code])
    if failure.status == 409:  # the SDK retries a conflict like a 5xx
        return RetryableError(
            message, code=errors.PROVIDER_UNAVAILABLE, retry_after_s=failure.retry_after_s
        )
    return None


def poll_after_s(headers: httpx.Headers) -> float | None:
    """The ``openai-poll-after-ms`` header in seconds; None when absent or unreadable."""
    try:
        millis = float(headers.get(POLL_AFTER_HEADER, ""))
    except ValueError:
        return None
    return millis / 1000 if 0 <= millis < float("inf") else None


class OpenAIProvider(JsonAdapter):
    """The ``openai`` adapter. ``DELETE /videos/{id}`` only deletes completed or failed videos:
    a running one cannot be stopped, so cancel is not offered. ``GET /videos`` lists the
    account's videos, but none carries the job id (the create call takes no metadata or client
    reference); matching on prompt and time could adopt another job's video, so reconcile finds
    nothing. The content endpoint needs the key (``download_needs_key``)."""

    validate = staticmethod(validate)
    business = staticmethod(classify)
    log = logger
    poll_route = "/videos/{id}"
    statuses = _STATUSES
    task_noun = "video"
    no_task_id = "submit answered HTTP 200 without a video id"
    finish_field = "completed_at"
    download_needs_key = True

    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        """JSON without an image or with an image URL; multipart with a ``data:`` image.

        ``job_id`` and ``callback_url`` cannot be sent: the endpoint has no request id, metadata
        or callback field.
        """
        return SubmitRequest("/videos", request_content(spec))

    def progress(self, answer: dict[str, Any]) -> float | None:
        progress = answer.get("progress")
        return float(progress) if isinstance(progress, int | float) else None

    def poll_after(self, response: httpx.Response) -> float | None:
        return poll_after_s(response.headers)

    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        """The content endpoint, and its thumbnail variant as the cover."""
        content = f"{self.config.base_url}{self.poll_path(task)}/content"
        return content, f"{content}?variant=thumbnail"

    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        code, message = _failure(answer)
        job_code = errors.CONTENT_POLICY if code == "moderation_blocked" else errors.PROVIDER_FAILED
        return job_code, f"{code or 'failed'}: {message}"


def _failure(payload: dict[str, Any]) -> tuple[str, str]:
    """``(code, message)`` from the Video object's ``error``; either may be missing."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else "",
        message.strip()
        if isinstance(message, str) and message.strip()
        else "the video failed (no detail given)",
    )


# The registry's entry point (workers.providers); typed so that mypy checks it fits the seam.
ADAPTER: type[VideoProvider] = OpenAIProvider
