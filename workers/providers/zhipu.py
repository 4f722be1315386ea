"""Zhipu AI (bigmodel.cn / Z.ai): CogVideoX and the Vidu models Zhipu hosts.

Wire format: docs/wire-formats.md §1 and the official CogVideoX API reference. The job id goes out
as ``request_id``; Zhipu refuses a repeated one with business code 1231, so re-sending a submit
whose outcome is unknown can never start a second paid generation (``idempotent_submit``). What
a spec may hold, and the submit built from it: ``workers.providers.zhipu_spec``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from config.providers import ApiKey
from workers.domain import errors
from workers.domain.errors import DuplicateSubmission, PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import SigningAdapter, SubmitRequest
from workers.providers.base import ProviderTask, VideoProvider
from workers.providers.http import HttpFailure
from workers.providers.jwt import Minted, sign_hs256
from workers.providers.zhipu_spec import request_body, validate

logger = logging.getLogger("vidqueue.providers.zhipu")

# Zhipu's own key form, ``<id>.<secret>``: with ``auth = "jwt"`` it signs a JWT (legacy mode).
LEGACY_KEY: Final = re.compile(r"^([0-9A-Za-z]+)\.([0-9A-Za-z]+)$")
TOKEN_LIFETIME_S: Final = 210  # what the SDK gives its tokens
TOKEN_REFRESH_S: Final = 30
# 1304 = the account's daily call limit: asking again within minutes only burns retries.
DAILY_LIMIT_RETRY_S: Final = 600.0


_STATUSES: Final = {
    "SUBMITTED": ProviderStatus.QUEUED,  # seen only in an SDK example
    "PROCESSING": ProviderStatus.RUNNING,
    "SUCCESS": ProviderStatus.SUCCEEDED,
    "FAIL": ProviderStatus.FAILED,
}
_RETRYABLE_CODES: Final = {
    "1302": errors.CONCURRENCY_LIMITED,
    "1303": errors.RATE_LIMITED,
    "1305": errors.RATE_LIMITED,
    "1312": errors.RATE_LIMITED,
}
_PERMANENT_CODES: Final = {
    "1113": errors.INSUFFICIENT_BALANCE,  # comes as HTTP 429, yet waiting will not pay the bill
    "1211": errors.MODEL_NOT_FOUND,
    "1261": errors.INVALID_REQUEST,  # prompt too long
    "1301": errors.CONTENT_POLICY,
}
_PERMANENT_CODE_RANGES: Final = (
    (1000, 1004, errors.AUTH_FAILED),
    (1100, 1121, errors.PERMISSION_DENIED),  # the account is inactive, locked or in arrears
    (1210, 1215, errors.INVALID_REQUEST),
)
_PERMANENT_STATUSES: Final = {434: errors.PERMISSION_DENIED, 435: errors.INVALID_REQUEST}


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """Zhipu's business codes (docs/wire-formats.md §1); None leaves the generic status rules."""
    code, message = failure.code or "", failure.describe()
    if code == "1231" and submitting:
        return DuplicateSubmission(message)
    if code == "1304":
        wait = max(failure.retry_after_s or 0.0, DAILY_LIMIT_RETRY_S)
        return RetryableError(message, code=errors.QUOTA_EXCEEDED, retry_after_s=wait)
    if code in _RETRYABLE_CODES:
        return RetryableError(
            message, code=_RETRYABLE_CODES[code], retry_after_s=failure.retry_after_s
        )
    if code in _PERMANENT_CODES:
        return PermanentError(message, code=_PERMANENT_CODES[code])
    number = int(code) if code.isdigit() else -1
    for low, high, error_code in _PERMANENT_CODE_RANGES:
        if low <= number <= high:
            return PermanentError(message, code=error_code)
    if failure.status in _PERMANENT_STATUSES:
        return PermanentError(message, code=_PERMANENT_STATUSES[failure.status])
    return None


class ZhipuProvider(SigningAdapter):
    """The ``zhipu`` adapter. Zhipu has no cancel endpoint (a task keeps its slot until it
    ends), cannot look a task up by ``request_id`` (no reconcile), and its result URLs are
    public: sending the key along with a download would only leak it."""

    idempotent_submit = True
    validate = staticmethod(validate)
    business = staticmethod(classify)
    log = logger
    poll_route = "/async-result/{id}"
    statuses = _STATUSES
    status_field = "task_status"
    no_video = "reported SUCCESS without a video url"
    token_refresh_s = TOKEN_REFRESH_S

    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        """``callback_url`` is not sent: Zhipu's format has no callback."""
        return SubmitRequest("/videos/generations", {"json": request_body(job_id, spec)})

    def task_id(self, payload: dict[str, Any]) -> str | None:
        """``id``, also when it comes as a JSON number (taken as its text)."""
        task_id = payload.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            return str(task_id)
        return super().task_id(payload)

    def status_key(self, raw: str) -> str:
        return raw.upper()

    def headers(self, key: ApiKey) -> dict[str, str]:
        # English error messages: they end up in job records read by producers.
        return {"Authorization": f"Bearer {self.credential(key)}", "Accept-Language": "en-US,en"}

    def credential(self, key: ApiKey) -> str:
        """What follows ``Bearer``: the key itself (what the current SDK sends), or with
        ``auth = "jwt"`` a short-lived JWT signed with an ``<id>.<secret>`` key, which is then
        never sent itself (Zhipu's legacy mode, still accepted)."""
        match = LEGACY_KEY.match(key.secret)
        if self.config.auth != "jwt" or match is None:
            return key.secret
        key_id, secret = match.groups()

        def mint(now: float) -> Minted:
            now_ms = int(now * 1000)
            expires_ms = now_ms + TOKEN_LIFETIME_S * 1000
            claims = {"api_key": key_id, "exp": expires_ms, "timestamp": now_ms}
            header = {"alg": "HS256", "sign_type": "SIGN"}
            return sign_hs256(header, claims, secret), expires_ms / 1000

        return self._tokens.get(key.secret, mint)

    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        results = answer.get("video_result")
        first = results[0] if isinstance(results, list) and results else None
        video = first if isinstance(first, dict) else {}
        return video.get("url"), video.get("cover_image_url")

    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        return errors.PROVIDER_FAILED, _failure_detail(answer)


def _failure_detail(payload: dict[str, Any]) -> str:
    """FAIL has no documented detail field; use one if the answer happens to carry it."""
    error = payload.get("error")
    source = error if isinstance(error, dict) else payload
    message = source.get("message") or source.get("msg")
    if isinstance(message, str) and message.strip():
        code = source.get("code")
        return f"{code}: {message.strip()}" if code not in (None, "") else message.strip()
    return "the task failed (task_status FAIL, no detail given)"


# The registry's entry point (workers.providers); typed so that mypy checks it fits the seam.
ADAPTER: type[VideoProvider] = ZhipuProvider
