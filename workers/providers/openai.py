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
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.domain.errors import (
    AUTH_FAILED,
    CONTENT_POLICY,
    INSUFFICIENT_BALANCE,
    MODEL_NOT_FOUND,
    PROVIDER_FAILED,
    PROVIDER_PROTOCOL,
    PROVIDER_UNAVAILABLE,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask, with_finish_time
from workers.providers.http import HttpFailure, JsonApi, redact
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
    "moderation_blocked": CONTENT_POLICY,
    "insufficient_quota": INSUFFICIENT_BALANCE,  # comes as HTTP 429: waiting will not pay
    "billing_hard_limit_reached": INSUFFICIENT_BALANCE,
    "model_not_found": MODEL_NOT_FOUND,
    "invalid_api_key": AUTH_FAILED,
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
            message, code=PROVIDER_UNAVAILABLE, retry_after_s=failure.retry_after_s
        )
    return None


def poll_after_s(headers: httpx.Headers) -> float | None:
    """The ``openai-poll-after-ms`` header in seconds; None when absent or unreadable."""
    try:
        millis = float(headers.get(POLL_AFTER_HEADER, ""))
    except ValueError:
        return None
    return millis / 1000 if 0 <= millis < float("inf") else None


class OpenAIProvider:
    """The ``openai`` adapter; shares one ``httpx.Client`` (thread-safe) across threads."""

    idempotent_submit: bool = False

    def __init__(self, config: ProviderConfig, client: httpx.Client) -> None:
        self.config = config
        self._api = JsonApi(config.name, client, httpx.Timeout(config.request_timeout_s))

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        """JSON without an image or with an image URL; multipart with a ``data:`` image.

        ``job_id`` cannot be sent: the endpoint has no request id or metadata field.
        """
        validate(spec)
        _, payload = self._api.call(
            "POST",
            f"{self.config.base_url}/videos",
            headers=self._headers(key),
            secret=key.secret,
            submitting=True,
            business=partial(classify, submitting=True),
            **request_content(spec),
        )
        video_id = payload.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise SubmitOutcomeUnknown(
                f"{self.config.name}: submit answered HTTP 200 without a video id"
            )
        return ProviderTask(id=video_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        response, payload = self._api.call(
            "GET",
            self._video_url(task.id),
            headers=self._headers(key),
            secret=key.secret,
            submitting=False,
            business=partial(classify, submitting=False),
        )
        result = self._poll_result(task, payload, key, poll_after_s(response.headers))
        return with_finish_time(result, payload.get("completed_at"))

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """``DELETE /videos/{id}`` only deletes completed or failed videos: a running one cannot
        be stopped, so it keeps its slot until OpenAI finishes it."""
        return False

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """``GET /videos`` lists the account's videos, but none carries the job id (the create
        call takes no metadata or client reference). Matching on prompt and time could adopt
        another job's video, so no match is attempted."""
        return None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """The content endpoint needs the key; any other host must never see it."""
        if under_base_url(url, self.config.base_url):
            return {"Authorization": f"Bearer {key.secret}"}
        return {}

    def _headers(self, key: ApiKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.secret}"}

    def _video_url(self, video_id: str) -> str:
        return f"{self.config.base_url}/videos/{quote(video_id, safe='')}"

    def _poll_result(
        self, task: ProviderTask, payload: dict[str, Any], key: ApiKey, after_s: float | None
    ) -> PollResult:
        name = self.config.name
        raw = payload.get("status")
        if not isinstance(raw, str) or not raw:
            raise RetryableError(f"{name}: poll answer has no status", code=PROVIDER_PROTOCOL)
        progress = payload.get("progress")
        percent = float(progress) if isinstance(progress, int | float) else None
        status = _STATUSES.get(raw)
        if status is None:
            logger.warning("%s video %s: unknown status %r, taken as running", name, task.id, raw)
            status = ProviderStatus.RUNNING
        if status is ProviderStatus.SUCCEEDED:
            content = f"{self._video_url(task.id)}/content"
            return PollResult(
                status=status,
                video_url=content,
                cover_url=f"{content}?variant=thumbnail",
                progress=percent,
                raw_status=raw,
            )
        if status is ProviderStatus.FAILED:
            code, message = _failure(payload)
            return PollResult(
                status=status,
                error_code=CONTENT_POLICY if code == "moderation_blocked" else PROVIDER_FAILED,
                error_message=redact(f"{name}: {code or 'failed'}: {message}", key.secret),
                progress=percent,
                raw_status=raw,
            )
        return PollResult(status=status, progress=percent, poll_after_s=after_s, raw_status=raw)


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


# The registry's entry points (workers.providers).
ADAPTER = OpenAIProvider
