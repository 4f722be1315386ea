"""Volcengine Ark / BytePlus ModelArk: Doubao Seedance video generation.

Wire format: docs/wire-formats.md §4. A submit body has no request-id field, so a submit whose
outcome is unknown can never be re-sent safely nor matched to the task it may have created
(``idempotent_submit`` is False, ``reconcile`` finds nothing). Provider-specific fields come from
``spec.options`` under their wire names; ``spec.callback_url`` is vidqueue's own webhook for the
producer and is never handed to Ark (``options.callback_url`` is). vidqueue's provider callback
(``submit(..., callback_url=…)``) goes out as ``callback_url``, over ``options.callback_url``.
What a spec may hold, and the submit built from it: ``workers.providers.ark_spec``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from config.providers import ApiKey
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import JsonAdapter, SubmitRequest
from workers.providers.ark_spec import request_body, validate
from workers.providers.base import ProviderTask, VideoProvider
from workers.providers.http import HttpFailure, json_object, parse_failure, raise_for_status

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
        return PermanentError(message, code=errors.CONTENT_POLICY)
    if code == "AccountOverdueError":
        return PermanentError(message, code=errors.INSUFFICIENT_BALANCE)
    if code == "AccessDenied":
        return PermanentError(message, code=errors.PERMISSION_DENIED)
    if code.startswith("InvalidEndpointOrModel") or code == "ModelNotOpen":
        return PermanentError(message, code=errors.MODEL_NOT_FOUND)
    if code in ("MissingParameter", "InvalidParameter"):
        return PermanentError(message, code=errors.INVALID_REQUEST)
    if code == "QuotaExceeded":  # whatever Retry-After says: countdowns stop at 60 s anyway
        return RetryableError(message, code=errors.QUOTA_EXCEEDED, retry_after_s=QUOTA_RETRY_S)
    if code.split(".")[0] in ("RateLimitExceeded", "ModelAccountRpmRateLimitExceeded") or (
        code == "ServerOverloaded"
    ):
        return RetryableError(
            message, code=errors.RATE_LIMITED, retry_after_s=failure.retry_after_s
        )
    return None


class ArkProvider(JsonAdapter):
    """The ``ark`` adapter. Ark cannot tell which task a lost submit created: its body carries
    no client id, and the task list filters only by status, model, service tier and Ark's own
    task ids (no reconcile). Result URLs are pre-signed object-storage links: sending the key
    would only leak it. Cancel is Ark's own (DELETE, then a confirming GET)."""

    validate = staticmethod(validate)
    log = logger
    poll_route = "/contents/generations/tasks/{id}"
    statuses = _STATUSES
    no_video = "succeeded without a video_url"
    finish_field = "updated_at"
    callback_option = "callback_url"

    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        """``job_id`` is not sent: Ark has no field to carry it."""
        body = request_body(spec, callback_url)
        return SubmitRequest("/contents/generations/tasks", {"json": body})

    def accepts_callback(self, spec: JobSpec) -> bool:
        """Every Seedance model takes ``callback_url``."""
        return True

    def business(self, failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
        """Ark's codes mean the same on a submit and on a poll."""
        return classify(failure)

    def status_key(self, raw: str) -> str:
        return raw.lower()

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
        name, headers = self.config.name, self.headers(key)
        url = f"{self.config.base_url}{self.poll_path(task)}"
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

    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        """``content.video_url``; the cover is ``last_frame_url``, only there when the submit
        asked for ``return_last_frame``: the best cover Ark offers."""
        content = answer.get("content")
        content = content if isinstance(content, dict) else {}
        return content.get("video_url"), content.get("last_frame_url")

    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        """The job's error code and message for a failed or expired task."""
        if raw.lower() == "expired":
            return errors.TIMEOUT, "the task expired (execution_expires_after) before it finished"
        error = answer.get("error")
        error = error if isinstance(error, dict) else {}
        code, message = error.get("code"), error.get("message")
        code = code if isinstance(code, str) else ""
        detail = message.strip() if isinstance(message, str) and message.strip() else "no detail"
        job_code = (
            errors.CONTENT_POLICY if "SensitiveContentDetected" in code else errors.PROVIDER_FAILED
        )
        return job_code, f"{code}: {detail}" if code else f"the task failed ({detail})"


# The registry's entry point (workers.providers); typed so that mypy checks it fits the seam.
ADAPTER: type[VideoProvider] = ArkProvider
