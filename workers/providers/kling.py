"""Kling's own API (klingai.com): text-to-video and image-to-video.

Wire format: docs/wire-formats.md §5. Requests carry a short-lived HS256 JWT signed with the key's
SecretKey; the key variable holds ``ACCESS_KEY:SECRET_KEY``. A job without an image goes to the
``text2video`` family, one with images to ``image2video``; the family is kept in
``ProviderTask.extra`` because a task can only be polled under the family it was created in.

The job id always goes out as ``external_task_id``. Whether Kling refuses a repeated one is
unconfirmed, so a submit whose outcome is unknown is never re-sent (``idempotent_submit`` is
False); ``reconcile`` looks the task up by that id instead. Provider fields come from
``spec.options`` under their wire names; ``spec.callback_url`` is the producer's webhook and is
never handed to Kling. vidqueue's own callback URL (``submit(..., callback_url=…)``) goes out as
``callback_url``, over a producer's ``options.callback_url``. What a spec may hold, and the
submit built from it: ``workers.providers.kling_spec``.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey
from workers.domain import errors
from workers.domain.errors import ConfigError, PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import SigningAdapter, SubmitRequest, text
from workers.providers.base import ProviderTask, VideoProvider
from workers.providers.http import HttpFailure, retry_after_s
from workers.providers.jwt import Minted, sign_hs256
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
    **dict.fromkeys((1000, 1001, 1002, 1003, 1004), errors.AUTH_FAILED),
    # Account anomaly, arrears, resource pack used up: HTTP 429, yet waiting will not pay.
    **dict.fromkeys((1100, 1101, 1102), errors.INSUFFICIENT_BALANCE),
    1103: errors.PERMISSION_DENIED,
    **dict.fromkeys((1200, 1201, 1202), errors.INVALID_REQUEST),
    **dict.fromkeys((1300, 1301), errors.CONTENT_POLICY),
    1304: errors.PERMISSION_DENIED,  # the caller's IP is not on the key's whitelist
}


class KeyFormatError(ConfigError, PermanentError):
    """A Kling key variable without ``ACCESS_KEY:SECRET_KEY``: the configuration is wrong, and
    the job that found out fails at once instead of being retried."""


def business_codes(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """Kling's business codes (docs/wire-formats.md §5); None leaves the generic status rules."""
    code = int(failure.code) if failure.code and failure.code.isdigit() else None
    message = failure.describe()
    if code == 1203:  # a resource (a model on submit, the task on a poll) does not exist
        return PermanentError(
            message, code=errors.MODEL_NOT_FOUND if submitting else errors.INVALID_REQUEST
        )
    if code in _PERMANENT_CODES:
        return PermanentError(message, code=_PERMANENT_CODES[code])
    if code == 1302:
        return RetryableError(
            message, code=errors.RATE_LIMITED, retry_after_s=failure.retry_after_s
        )
    if code == 1303:
        wait = max(failure.retry_after_s or 0.0, random.uniform(*CONCURRENCY_RETRY_S))
        return RetryableError(message, code=errors.CONCURRENCY_LIMITED, retry_after_s=wait)
    if code in (5000, 5001, 5002):
        return RetryableError(
            message, code=errors.PROVIDER_UNAVAILABLE, retry_after_s=failure.retry_after_s
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


class KlingProvider(SigningAdapter):
    """The ``kling`` adapter. Kling has no cancel endpoint (a task keeps its slot until it
    ends); its result URLs are public CDN links, so a download is sent no token. Every answer
    is a ``{code, message, request_id, data}`` envelope whose non-zero ``code`` is an error even
    in a 200 (``body_failure``)."""

    validate = staticmethod(validate)
    business = staticmethod(business_codes)
    log = logger
    poll_route = "/v1/videos/{family}/{id}"
    statuses = _STATUSES
    status_field = "task_status"
    no_task_id = "submit answered without a task_id"
    finish_field = "updated_at"
    finish_in_millis = True
    token_refresh_s = TOKEN_REFRESH_S
    callback_option = "callback_url"

    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        """To the spec's family, which the task keeps: it can only be polled there."""
        family = family_of(spec)
        body = {"json": request_body(job_id, spec, callback_url)}
        return SubmitRequest(f"/v1/videos/{family}", body, extra={"family": family})

    def accepts_callback(self, spec: JobSpec) -> bool:
        """Both families take ``callback_url``."""
        return True

    def poll_path(self, task: ProviderTask) -> str:
        """Under the family the task was created in: the only place it can be found."""
        family = task.extra.get("family", "")
        if family not in FAMILIES:
            raise PermanentError(
                f"{self.config.name}: task {task.id} has no family recorded (got {family!r})",
                code=errors.PROVIDER_PROTOCOL,
            )
        return self.poll_route.format(family=family, id=quote(task.id, safe=""))

    def secret(self, key: ApiKey) -> str:
        return split_key(key)[1]

    def headers(self, key: ApiKey) -> dict[str, str]:
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

    def body_failure(self, response: httpx.Response, payload: dict[str, Any]) -> HttpFailure | None:
        """Any non-zero ``code``, also in a 200."""
        code = payload.get("code", 0)
        if code in (0, "0"):
            return None
        message = payload.get("message")
        return HttpFailure(
            provider=self.config.name,
            status=response.status_code,
            code=str(code),
            message=message if isinstance(message, str) else "error",
            retry_after_s=retry_after_s(response.headers),
        )

    def task_id(self, payload: dict[str, Any]) -> str | None:
        data = payload.get("data")
        return text(data.get("task_id")) if isinstance(data, dict) else None

    def poll_answer(
        self, response: httpx.Response, payload: dict[str, Any], key: ApiKey
    ) -> dict[str, Any]:
        data = payload.get("data")
        if not isinstance(data, dict):
            raise RetryableError(
                f"{self.config.name}: poll answer has no data", code=errors.PROVIDER_PROTOCOL
            )
        return data

    def status_key(self, raw: str) -> str:
        return raw.lower()

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """The task whose ``external_task_id`` is ``job_id``, in either family, if it exists.

        How to query by external_task_id is unconfirmed. This asks the list endpoint of each
        family with ``external_task_id`` as a query parameter plus the largest page
        (``pageNum=1&pageSize=500``), and accepts either answer shape: one task object (the
        filter was honoured) or a list, which is searched here (the filter was ignored; the
        task, submitted moments ago, is then among the 500 newest).
        """
        query = {"external_task_id": job_id, "pageNum": 1, "pageSize": RECONCILE_PAGE_SIZE}
        for family in FAMILIES:
            path = f"/v1/videos/{family}"
            _, payload = self.call("GET", path, key, submitting=False, params=query)
            data = payload.get("data")
            for item in data if isinstance(data, list) else [data]:
                task_id = _task_id_for(item, job_id)
                if task_id is not None:
                    return ProviderTask(id=task_id, extra={"family": family})
        return None

    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        """The first video's URL; Kling's format has no cover image."""
        result = answer.get("task_result")
        videos = result.get("videos") if isinstance(result, dict) else None
        first = videos[0] if isinstance(videos, list) and videos else None
        return (first.get("url") if isinstance(first, dict) else None), None

    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        reason = answer.get("task_status_msg")
        detail = reason.strip() if isinstance(reason, str) and reason.strip() else "no detail"
        return errors.PROVIDER_FAILED, f"the task failed: {detail}"


def _task_id_for(item: object, job_id: str) -> str | None:
    if not isinstance(item, dict):
        return None
    info = item.get("task_info")
    external = info.get("external_task_id") if isinstance(info, dict) else None
    task_id = item.get("task_id")
    if external == job_id and isinstance(task_id, str) and task_id:
        return task_id
    return None


# The registry's entry point (workers.providers); typed so that mypy checks it fits the seam.
ADAPTER: type[VideoProvider] = KlingProvider
