"""Zhipu AI (bigmodel.cn / Z.ai): CogVideoX and the Vidu models Zhipu hosts.

Wire format: docs/wire-formats.md §1 and the official CogVideoX API reference. The job id goes out
as ``request_id``; Zhipu refuses a repeated one with business code 1231, so re-sending a submit
whose outcome is unknown can never start a second paid generation (``idempotent_submit``). What
a spec may hold, and the submit built from it: ``workers.providers.zhipu_spec``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.domain.errors import (
    AUTH_FAILED,
    CONCURRENCY_LIMITED,
    CONTENT_POLICY,
    INSUFFICIENT_BALANCE,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    PERMISSION_DENIED,
    PROVIDER_FAILED,
    PROVIDER_PROTOCOL,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    DuplicateSubmission,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask
from workers.providers.http import HttpFailure, JsonApi, redact
from workers.providers.jwt import Minted, TokenCache, sign_hs256
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
    "1302": CONCURRENCY_LIMITED,
    "1303": RATE_LIMITED,
    "1305": RATE_LIMITED,
    "1312": RATE_LIMITED,
}
_PERMANENT_CODES: Final = {
    "1113": INSUFFICIENT_BALANCE,  # comes as HTTP 429, yet waiting will not pay the bill
    "1211": MODEL_NOT_FOUND,
    "1261": INVALID_REQUEST,  # prompt too long
    "1301": CONTENT_POLICY,
}
_PERMANENT_CODE_RANGES: Final = (
    (1000, 1004, AUTH_FAILED),
    (1100, 1121, PERMISSION_DENIED),  # the account is inactive, locked or in arrears
    (1210, 1215, INVALID_REQUEST),
)
_PERMANENT_STATUSES: Final = {434: PERMISSION_DENIED, 435: INVALID_REQUEST}


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """Zhipu's business codes (docs/wire-formats.md §1); None leaves the generic status rules."""
    code, message = failure.code or "", failure.describe()
    if code == "1231" and submitting:
        return DuplicateSubmission(message)
    if code == "1304":
        wait = max(failure.retry_after_s or 0.0, DAILY_LIMIT_RETRY_S)
        return RetryableError(message, code=QUOTA_EXCEEDED, retry_after_s=wait)
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


class ZhipuProvider:
    """The ``zhipu`` adapter; shares one ``httpx.Client`` (thread-safe) across threads."""

    idempotent_submit: bool = True

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._api = JsonApi(config.name, client, httpx.Timeout(config.request_timeout_s))
        self._tokens = TokenCache(refresh_s=TOKEN_REFRESH_S, clock=clock)

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        validate(spec)
        _, payload = self._api.call(
            "POST",
            f"{self.config.base_url}/videos/generations",
            headers=self._headers(key),
            json=request_body(job_id, spec),
            secret=key.secret,
            submitting=True,
            business=partial(classify, submitting=True),
        )
        task_id = payload.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            # A 200 was sent for this request: the task may well exist, only its id is missing.
            raise SubmitOutcomeUnknown(
                f"{self.config.name}: submit answered HTTP 200 without a task id"
            )
        return ProviderTask(id=task_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        _, payload = self._api.call(
            "GET",
            f"{self.config.base_url}/async-result/{quote(task.id, safe='')}",
            headers=self._headers(key),
            secret=key.secret,
            submitting=False,
            business=partial(classify, submitting=False),
        )
        return self._poll_result(task, payload, key)

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """Zhipu has no cancel endpoint: the task runs to its end and keeps its slot."""
        return False

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """Zhipu cannot look a task up by request_id."""
        return None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """Zhipu's result URLs are public: sending the key along would only leak it."""
        return {}

    def _headers(self, key: ApiKey) -> dict[str, str]:
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

    def _poll_result(self, task: ProviderTask, payload: dict[str, Any], key: ApiKey) -> PollResult:
        name = self.config.name
        raw = payload.get("task_status")
        if not isinstance(raw, str) or not raw:
            raise RetryableError(f"{name}: poll answer has no task_status", code=PROVIDER_PROTOCOL)
        status = _STATUSES.get(raw.upper())
        if status is None:
            logger.warning(
                "%s task %s: unknown task_status %r, taken as running", name, task.id, raw
            )
            return PollResult(status=ProviderStatus.RUNNING, raw_status=raw)
        if status is ProviderStatus.SUCCEEDED:
            return _success(name, task, payload, raw)
        if status is ProviderStatus.FAILED:
            return PollResult(
                status=status,
                error_code=PROVIDER_FAILED,
                error_message=redact(f"{name}: {_failure_detail(payload)}", key.secret),
                raw_status=raw,
            )
        return PollResult(status=status, raw_status=raw)


def _success(name: str, task: ProviderTask, payload: dict[str, Any], raw: str) -> PollResult:
    results = payload.get("video_result")
    first = results[0] if isinstance(results, list) and results else None
    video = first if isinstance(first, dict) else {}
    url, cover = video.get("url"), video.get("cover_image_url")
    if not isinstance(url, str) or not url:
        raise PermanentError(
            f"{name}: task {task.id} reported SUCCESS without a video url", code=PROVIDER_PROTOCOL
        )
    return PollResult(
        status=ProviderStatus.SUCCEEDED,
        video_url=url,
        cover_url=cover if isinstance(cover, str) and cover else None,
        raw_status=raw,
    )


def _failure_detail(payload: dict[str, Any]) -> str:
    """FAIL has no documented detail field; use one if the answer happens to carry it."""
    error = payload.get("error")
    source = error if isinstance(error, dict) else payload
    message = source.get("message") or source.get("msg")
    if isinstance(message, str) and message.strip():
        code = source.get("code")
        return f"{code}: {message.strip()}" if code not in (None, "") else message.strip()
    return "the task failed (task_status FAIL, no detail given)"


# The registry's entry points (workers.providers).
ADAPTER = ZhipuProvider
