"""Volcengine Ark / BytePlus ModelArk: Doubao Seedance video generation.

Wire format: docs/wire-formats.md §4. A submit body has no request-id field, so a submit whose
outcome is unknown can never be re-sent safely nor matched to the task it may have created
(``idempotent_submit`` is False, ``reconcile`` finds nothing). Provider-specific fields come from
``spec.options`` under their wire names; ``spec.callback_url`` is vidqueue's own webhook for the
producer and is never handed to Ark (``options.callback_url`` is). What a spec may hold, and the
submit built from it: ``workers.providers.ark_spec``.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.domain.errors import (
    CANCELLED,
    CONTENT_POLICY,
    INSUFFICIENT_BALANCE,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    PERMISSION_DENIED,
    PROVIDER_FAILED,
    PROVIDER_PROTOCOL,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    TIMEOUT,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.ark_spec import request_body, validate
from workers.providers.base import PollResult, ProviderTask, with_finish_time
from workers.providers.http import (
    HttpFailure,
    JsonApi,
    json_object,
    parse_failure,
    raise_for_status,
    redact,
)

logger = logging.getLogger("vidqueue.providers.ark")

# QuotaExceeded comes as a 429, but the quota will not refill within seconds: wait the longest
# countdown the pipeline allows.
QUOTA_RETRY_S: Final = 60.0
_STATUSES: Final = {
    "queued": ProviderStatus.QUEUED,
    "running": ProviderStatus.RUNNING,
    "succeeded": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
    "expired": ProviderStatus.FAILED,  # execution_expires_after passed before it ran
    "cancelled": ProviderStatus.CANCELLED,
}
_ACTIVE: Final = (ProviderStatus.QUEUED, ProviderStatus.RUNNING)


def classify(failure: HttpFailure) -> VidqueueError | None:
    """Ark's error codes (docs/wire-formats.md §4); None leaves the generic status rules."""
    code, message = failure.code or "", failure.describe()
    if "SensitiveContentDetected" in code:
        return PermanentError(message, code=CONTENT_POLICY)
    if code == "AccountOverdueError":
        return PermanentError(message, code=INSUFFICIENT_BALANCE)
    if code == "AccessDenied":
        return PermanentError(message, code=PERMISSION_DENIED)
    if code.startswith("InvalidEndpointOrModel") or code == "ModelNotOpen":
        return PermanentError(message, code=MODEL_NOT_FOUND)
    if code in ("MissingParameter", "InvalidParameter"):
        return PermanentError(message, code=INVALID_REQUEST)
    if code == "QuotaExceeded":  # whatever Retry-After says: countdowns stop at 60 s anyway
        return RetryableError(message, code=QUOTA_EXCEEDED, retry_after_s=QUOTA_RETRY_S)
    if code.split(".")[0] in ("RateLimitExceeded", "ModelAccountRpmRateLimitExceeded") or (
        code == "ServerOverloaded"
    ):
        return RetryableError(message, code=RATE_LIMITED, retry_after_s=failure.retry_after_s)
    return None


class ArkProvider:
    """The ``ark`` adapter; shares one ``httpx.Client`` (thread-safe) across threads."""

    idempotent_submit: bool = False

    def __init__(self, config: ProviderConfig, client: httpx.Client) -> None:
        self.config = config
        self._api = JsonApi(config.name, client, httpx.Timeout(config.request_timeout_s))

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        """Create the task. ``job_id`` is not sent: Ark has no field to carry it."""
        validate(spec)
        _, payload = self._api.call(
            "POST",
            f"{self.config.base_url}/contents/generations/tasks",
            headers=_headers(key),
            json=request_body(spec),
            secret=key.secret,
            submitting=True,
            business=classify,
        )
        task_id = payload.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(
                f"{self.config.name}: submit answered HTTP 200 without a task id"
            )
        return ProviderTask(id=task_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        _, payload = self._api.call(
            "GET",
            self._task_url(task),
            headers=_headers(key),
            secret=key.secret,
            submitting=False,
            business=classify,
        )
        return with_finish_time(self._poll_result(task, payload, key), payload.get("updated_at"))

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """DELETE the task; True only once a fresh GET shows it cancelled (or gone).

        Ark cancels a *queued* task; whether DELETE stops a running one is unconfirmed, so its
        answer alone proves nothing. A finished task is left alone: DELETE would erase its record
        (and the result with it) without freeing anything. Never raises: on any doubt the answer
        is False, and the slot stays held until a poll sees the task end.
        """
        try:
            before = self.poll(task, key)
            if before.status is ProviderStatus.CANCELLED:
                return True
            if before.status not in _ACTIVE:
                return False
            return self._delete_and_confirm(task, key)
        except VidqueueError as exc:
            logger.warning(
                "%s task %s: cancel not confirmed: %s", self.config.name, task.id, exc.message
            )
            return False

    def _delete_and_confirm(self, task: ProviderTask, key: ApiKey) -> bool:
        """DELETE, then re-read: only the task's own record says whether the slot is free."""
        name, url, headers = self.config.name, self._task_url(task), _headers(key)
        response = self._api.send("DELETE", url, headers=headers, submitting=False)
        if not response.is_success:
            refused = parse_failure(response, name, secret=key.secret).describe()
            logger.info("%s task %s: cancel refused: %s", name, task.id, refused)
            return False
        after = self._api.send("GET", url, headers=headers, submitting=False)
        if after.status_code == 404:
            return True
        raise_for_status(after, name, business=classify, secret=key.secret)
        status = json_object(after, name, submitting=False).get("status")
        if status != "cancelled":
            logger.info("%s task %s: still %r after DELETE", name, task.id, status)
        return status == "cancelled"

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """Ark cannot tell which task a lost submit created: its body carries no client id, and
        the task list filters only by status, model, service tier and Ark's own task ids."""
        return None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """Result URLs are pre-signed object-storage links: sending the key would only leak it."""
        return {}

    def _task_url(self, task: ProviderTask) -> str:
        return f"{self.config.base_url}/contents/generations/tasks/{quote(task.id, safe='')}"

    def _poll_result(self, task: ProviderTask, payload: dict[str, Any], key: ApiKey) -> PollResult:
        name = self.config.name
        raw = payload.get("status")
        if not isinstance(raw, str) or not raw:
            raise RetryableError(f"{name}: poll answer has no status", code=PROVIDER_PROTOCOL)
        status = _STATUSES.get(raw.lower())
        if status is None:
            logger.warning("%s task %s: unknown status %r, taken as running", name, task.id, raw)
            return PollResult(status=ProviderStatus.RUNNING, raw_status=raw)
        if status is ProviderStatus.SUCCEEDED:
            return _success(name, task, payload, raw)
        if status is ProviderStatus.FAILED:
            code, detail = _failure(payload, raw)
            message = redact(f"{name}: {detail}", key.secret)
            return PollResult(status=status, error_code=code, error_message=message, raw_status=raw)
        if status is ProviderStatus.CANCELLED:
            message = f"{name}: the task was cancelled at the provider"
            return PollResult(
                status=status, error_code=CANCELLED, error_message=message, raw_status=raw
            )
        return PollResult(status=status, raw_status=raw)


def _headers(key: ApiKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"}


def _success(name: str, task: ProviderTask, payload: dict[str, Any], raw: str) -> PollResult:
    content = payload.get("content")
    content = content if isinstance(content, dict) else {}
    url, last_frame = content.get("video_url"), content.get("last_frame_url")
    if not isinstance(url, str) or not url:
        raise PermanentError(
            f"{name}: task {task.id} succeeded without a video_url", code=PROVIDER_PROTOCOL
        )
    return PollResult(
        status=ProviderStatus.SUCCEEDED,
        video_url=url,
        # Only there when the submit asked for return_last_frame; the best cover Ark offers.
        cover_url=last_frame if isinstance(last_frame, str) and last_frame else None,
        raw_status=raw,
    )


def _failure(payload: dict[str, Any], raw: str) -> tuple[str, str]:
    """The job's error code and message for a failed or expired task."""
    if raw.lower() == "expired":
        return TIMEOUT, "the task expired (execution_expires_after) before it finished"
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    code, message = error.get("code"), error.get("message")
    code = code if isinstance(code, str) else ""
    detail = message.strip() if isinstance(message, str) and message.strip() else "no detail"
    job_code = CONTENT_POLICY if "SensitiveContentDetected" in code else PROVIDER_FAILED
    return job_code, f"{code}: {detail}" if code else f"the task failed ({detail})"


# The registry's entry points (workers.providers).
ADAPTER = ArkProvider
