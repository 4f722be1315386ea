"""Kling's own API (klingai.com): text-to-video and image-to-video.

Wire format: docs/wire-formats.md §5. Requests carry a short-lived HS256 JWT signed with the key's
SecretKey; the key variable holds ``ACCESS_KEY:SECRET_KEY``. A job without an image goes to the
``text2video`` family, one with images to ``image2video``; the family is kept in
``ProviderTask.extra`` because a task can only be polled under the family it was created in.

The job id always goes out as ``external_task_id``. Whether Kling refuses a repeated one is
unconfirmed, so a submit whose outcome is unknown is never re-sent (``idempotent_submit`` is
False); ``reconcile`` looks the task up by that id instead. Provider fields come from
``spec.options`` under their wire names; ``spec.callback_url`` is vidqueue's own webhook and is
never handed to Kling. What a spec may hold, and the submit built from it:
``workers.providers.kling_spec``.
"""

from __future__ import annotations

import logging
import random
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
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    ConfigError,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask, with_finish_time
from workers.providers.http import (
    BusinessCodes,
    HttpFailure,
    JsonApi,
    classify,
    redact,
    retry_after_s,
)
from workers.providers.jwt import Minted, TokenCache, sign_hs256
from workers.providers.kling_spec import FAMILIES, family_of, request_body, validate

logger = logging.getLogger("vidqueue.providers.kling")

TOKEN_LIFETIME_S: Final = 1800
TOKEN_NOT_BEFORE_S: Final = 5  # nbf in the past absorbs a little clock skew
TOKEN_REFRESH_S: Final = 300  # mint a new token this long before the old one expires
# Kling asks for backoff from 1 s or more when a resource pack's concurrency is used up.
CONCURRENCY_RETRY_S: Final = (1.0, 3.0)
RECONCILE_PAGE_SIZE: Final = 500  # the largest page the list endpoint serves
_STATUSES: Final = {
    "submitted": ProviderStatus.QUEUED,
    "processing": ProviderStatus.RUNNING,
    "succeed": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
}
_PERMANENT_CODES: Final = {
    **dict.fromkeys((1000, 1001, 1002, 1003, 1004), AUTH_FAILED),
    # Account anomaly, arrears, resource pack used up: HTTP 429, yet waiting will not pay.
    **dict.fromkeys((1100, 1101, 1102), INSUFFICIENT_BALANCE),
    1103: PERMISSION_DENIED,
    **dict.fromkeys((1200, 1201, 1202), INVALID_REQUEST),
    **dict.fromkeys((1300, 1301), CONTENT_POLICY),
    1304: PERMISSION_DENIED,  # the caller's IP is not on the key's whitelist
}


class KeyFormatError(ConfigError, PermanentError):
    """A Kling key variable without ``ACCESS_KEY:SECRET_KEY``: the configuration is wrong, and
    the job that found out fails at once instead of being retried."""


def business_codes(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """Kling's business codes (docs/wire-formats.md §5); None leaves the generic status rules."""
    code = int(failure.code) if failure.code and failure.code.isdigit() else None
    message = failure.describe()
    if code == 1203:  # a resource (a model on submit, the task on a poll) does not exist
        return PermanentError(message, code=MODEL_NOT_FOUND if submitting else INVALID_REQUEST)
    if code in _PERMANENT_CODES:
        return PermanentError(message, code=_PERMANENT_CODES[code])
    if code == 1302:
        return RetryableError(message, code=RATE_LIMITED, retry_after_s=failure.retry_after_s)
    if code == 1303:
        wait = max(failure.retry_after_s or 0.0, random.uniform(*CONCURRENCY_RETRY_S))
        return RetryableError(message, code=CONCURRENCY_LIMITED, retry_after_s=wait)
    if code in (5000, 5001, 5002):
        return RetryableError(
            message, code=PROVIDER_UNAVAILABLE, retry_after_s=failure.retry_after_s
        )
    return None


def split_key(key: ApiKey) -> tuple[str, str]:
    """``(access_key, secret_key)`` from the variable's ``ACCESS_KEY:SECRET_KEY`` value."""
    access, colon, secret = key.secret.partition(":")
    if not colon or not access.strip() or not secret.strip():
        raise KeyFormatError(
            f"kling: environment variable {key.id} must hold ACCESS_KEY:SECRET_KEY "
            "(the access key, a colon, the secret key)"
        )
    return access.strip(), secret.strip()


class KlingProvider:
    """The ``kling`` adapter; shares one ``httpx.Client`` (thread-safe) across threads."""

    idempotent_submit: bool = False

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
        family = family_of(spec)
        data = self._call(
            "POST",
            f"{self.config.base_url}/v1/videos/{family}",
            key,
            submitting=True,
            json=request_body(job_id, spec),
        )
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(f"{self.config.name}: submit answered without a task_id")
        return ProviderTask(id=task_id, extra={"family": family})

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        family = task.extra.get("family", "")
        if family not in FAMILIES:
            raise PermanentError(
                f"{self.config.name}: task {task.id} has no family recorded (got {family!r})",
                code=PROVIDER_PROTOCOL,
            )
        data = self._call(
            "GET",
            f"{self.config.base_url}/v1/videos/{family}/{quote(task.id, safe='')}",
            key,
            submitting=False,
        )
        if not isinstance(data, dict):
            raise RetryableError(
                f"{self.config.name}: poll answer has no data", code=PROVIDER_PROTOCOL
            )
        return with_finish_time(
            self._poll_result(task, data, key), data.get("updated_at"), millis=True
        )

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """Kling has no cancel endpoint: the task runs to its end and keeps its slot."""
        return False

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """The task whose ``external_task_id`` is ``job_id``, in either family, if it exists.

        How to query by external_task_id is unconfirmed. This asks the list endpoint of each
        family with ``external_task_id`` as a query parameter plus the largest page
        (``pageNum=1&pageSize=500``), and accepts either answer shape: one task object (the
        filter was honoured) or a list, which is searched here (the filter was ignored; the
        task, submitted moments ago, is then among the 500 newest).
        """
        for family in FAMILIES:
            data = self._call(
                "GET",
                f"{self.config.base_url}/v1/videos/{family}",
                key,
                submitting=False,
                params={"external_task_id": job_id, "pageNum": 1, "pageSize": RECONCILE_PAGE_SIZE},
            )
            for item in data if isinstance(data, list) else [data]:
                task_id = _task_id_for(item, job_id)
                if task_id is not None:
                    return ProviderTask(id=task_id, extra={"family": family})
        return None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """Result URLs are public CDN links: sending the token would only leak it."""
        return {}

    def _headers(self, key: ApiKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(key)}"}

    def token(self, key: ApiKey) -> str:
        """The key's JWT, reused until ``TOKEN_REFRESH_S`` before it expires."""
        access, secret = split_key(key)

        def mint(now: float) -> Minted:
            issued = int(now)
            claims = {
                "iss": access,
                "exp": issued + TOKEN_LIFETIME_S,
                "nbf": issued - TOKEN_NOT_BEFORE_S,
            }
            header = {"alg": "HS256", "typ": "JWT"}
            return sign_hs256(header, claims, secret), issued + TOKEN_LIFETIME_S

        return self._tokens.get(key.secret, mint)

    def _call(
        self, method: str, url: str, key: ApiKey, *, submitting: bool, **request: Any
    ) -> object:
        """The ``data`` of a ``{code, message, request_id, data}`` answer. Any error is raised,
        also one a 200 carries as a non-zero ``code``."""
        secret = split_key(key)[1]
        business: BusinessCodes = partial(business_codes, submitting=submitting)
        response, payload = self._api.call(
            method,
            url,
            headers=self._headers(key),
            secret=secret,
            submitting=submitting,
            business=business,
            **request,
        )
        code = payload.get("code", 0)
        if code not in (0, "0"):
            message = payload.get("message")
            failure = HttpFailure(
                provider=self.config.name,
                status=response.status_code,
                code=str(code),
                message=redact(message if isinstance(message, str) else "error", secret),
                retry_after_s=retry_after_s(response.headers),
            )
            raise classify(failure, business)
        return payload.get("data")

    def _poll_result(self, task: ProviderTask, data: dict[str, Any], key: ApiKey) -> PollResult:
        name = self.config.name
        raw = data.get("task_status")
        if not isinstance(raw, str) or not raw:
            raise RetryableError(f"{name}: poll answer has no task_status", code=PROVIDER_PROTOCOL)
        status = _STATUSES.get(raw.lower())
        if status is None:
            logger.warning(
                "%s task %s: unknown task_status %r, taken as running", name, task.id, raw
            )
            return PollResult(status=ProviderStatus.RUNNING, raw_status=raw)
        if status is ProviderStatus.SUCCEEDED:
            return _success(name, task, data, raw)
        if status is ProviderStatus.FAILED:
            reason = data.get("task_status_msg")
            detail = reason.strip() if isinstance(reason, str) and reason.strip() else "no detail"
            message = redact(f"{name}: the task failed: {detail}", split_key(key)[1])
            return PollResult(
                status=status, error_code=PROVIDER_FAILED, error_message=message, raw_status=raw
            )
        return PollResult(status=status, raw_status=raw)


def _task_id_for(item: object, job_id: str) -> str | None:
    if not isinstance(item, dict):
        return None
    info = item.get("task_info")
    external = info.get("external_task_id") if isinstance(info, dict) else None
    task_id = item.get("task_id")
    if external == job_id and isinstance(task_id, str) and task_id:
        return task_id
    return None


def _success(name: str, task: ProviderTask, data: dict[str, Any], raw: str) -> PollResult:
    """The first video's URL; Kling's format has no cover image."""
    result = data.get("task_result")
    videos = result.get("videos") if isinstance(result, dict) else None
    first = videos[0] if isinstance(videos, list) and videos else None
    url = first.get("url") if isinstance(first, dict) else None
    if not isinstance(url, str) or not url:
        raise PermanentError(
            f"{name}: task {task.id} succeeded without a video url", code=PROVIDER_PROTOCOL
        )
    return PollResult(status=ProviderStatus.SUCCEEDED, video_url=url, raw_status=raw)


# The registry's entry points (workers.providers).
ADAPTER = KlingProvider
