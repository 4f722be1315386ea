"""A new-api-style gateway (QuantumNous/new-api): many vendors behind one token.

Wire format: docs/wire-formats.md §3, the generic routes ``POST /v1/video/generations`` and
``GET /v1/video/generations/{task_id}``. The model picks the upstream vendor ("family"); the
spec's ``options`` go into ``metadata``, which the gateway merges into the vendor's own body, so
they are checked against that vendor's fields. The gateway takes no idempotency id of its own,
so ``idempotent_submit`` is False; for Kling the job id goes upstream as ``external_task_id``.

Result URLs are usually the vendor's (public, expiring); older builds put the URL in
``fail_reason``; failing both, the gateway's own ``/v1/videos/{task_id}/content`` proxy serves
the file, and only that proxy (on the gateway's base URL) is sent the token. What a spec may
hold per vendor, and the submit built from it: ``workers.providers.gateway_spec``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.domain.errors import (
    CONCURRENCY_LIMITED,
    CONTENT_POLICY,
    INSUFFICIENT_BALANCE,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    PERMISSION_DENIED,
    PROVIDER_FAILED,
    PROVIDER_PROTOCOL,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask, with_finish_time
from workers.providers.gateway_spec import request_body, validate
from workers.providers.http import HttpFailure, JsonApi, redact, under_base_url

logger = logging.getLogger("vidqueue.providers.gateway")

# The message new-api puts on a 429 once every channel of the group is busy.
SATURATED: Final = ("负载已饱和", "saturated")

_STATUSES: Final = {
    "NOT_START": ProviderStatus.QUEUED,
    "SUBMITTED": ProviderStatus.QUEUED,
    "QUEUED": ProviderStatus.QUEUED,
    "IN_PROGRESS": ProviderStatus.RUNNING,
    "UNKNOWN": ProviderStatus.RUNNING,
    "SUCCESS": ProviderStatus.SUCCEEDED,
    "FAILURE": ProviderStatus.FAILED,
    # The flat shape docs.newapi.pro shows, and Gemini/Vertex channels' simple statuses.
    "queued": ProviderStatus.QUEUED,
    "in_progress": ProviderStatus.RUNNING,
    "processing": ProviderStatus.RUNNING,
    "completed": ProviderStatus.SUCCEEDED,
    "succeeded": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
}
_PERMANENT_CODES: Final = {
    "insufficient_user_quota": INSUFFICIENT_BALANCE,
    "pre_consume_token_quota_failed": INSUFFICIENT_BALANCE,
    "model_not_found": MODEL_NOT_FOUND,
    "sensitive_words_detected": CONTENT_POLICY,
    "access_denied": PERMISSION_DENIED,
    "not_implemented": INVALID_REQUEST,  # HTTP 501: the channel cannot do this at all
}


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """new-api's task and middleware codes (docs/wire-formats.md §3); None: the generic rules."""
    code, message = failure.code or "", failure.describe()
    if submitting and (code == "do_request_failed" or failure.status == 504):
        # The gateway lost its upstream call (or a proxy timed out) after sending it.
        return SubmitOutcomeUnknown(f"{message}; the upstream may have accepted the task")
    if failure.status == 429 and any(mark in failure.message for mark in SATURATED):
        return RetryableError(
            message, code=CONCURRENCY_LIMITED, retry_after_s=failure.retry_after_s
        )
    if code == "task_not_exist" and not submitting:
        return PermanentError(f"{message}: the gateway has no such task", code=PROVIDER_FAILED)
    if code in _PERMANENT_CODES:
        return PermanentError(message, code=_PERMANENT_CODES[code])
    return None


def task_dto(payload: dict[str, Any]) -> dict[str, Any]:
    """The TaskDto inside ``{"code":"success","data":…}``, or the flat shape itself."""
    data = payload.get("data")
    return data if isinstance(data, dict) else payload


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def _progress(value: object) -> float | None:
    """``"30%"`` (TaskDto) or ``30`` (OpenAI-style) as a percentage."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%"))
        except ValueError:
            return None
    return None


class GatewayProvider:
    """The ``gateway`` adapter; shares one ``httpx.Client`` (thread-safe) across threads."""

    idempotent_submit: bool = False

    def __init__(self, config: ProviderConfig, client: httpx.Client) -> None:
        self.config = config
        self._api = JsonApi(config.name, client, httpx.Timeout(config.request_timeout_s))

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        validate(spec)
        _, answer = self._api.call(
            "POST",
            f"{self.config.base_url}/v1/video/generations",
            headers=self._headers(key),
            json=request_body(job_id, spec),
            secret=key.secret,
            submitting=True,
            business=partial(classify, submitting=True),
        )
        payload = task_dto(answer)
        task_id = payload.get("task_id") or payload.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(
                f"{self.config.name}: submit answered HTTP 200 without a task id"
            )
        return ProviderTask(id=task_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        response, payload = self._api.call(
            "GET",
            f"{self.config.base_url}/v1/video/generations/{quote(task.id, safe='')}",
            headers=self._headers(key),
            secret=key.secret,
            submitting=False,
            business=partial(classify, submitting=False),
        )
        envelope_code = payload.get("code")
        if isinstance(envelope_code, str) and envelope_code not in ("success", ""):
            raise self._envelope_error(response, payload, key)
        dto = task_dto(payload)
        return with_finish_time(self._poll_result(task, dto, key), dto.get("finish_time"))

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """The gateway has no cancel route: the task runs to its end and keeps its slot."""
        return False

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """The gateway looks tasks up only by its own task id; Kling's external_task_id is not
        queryable through it, so an unknown submit cannot be matched."""
        return None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """The token goes only to the gateway's own content proxy; vendor URLs are public."""
        if under_base_url(url, self.config.base_url):
            return {"Authorization": f"Bearer {key.secret}"}
        return {}

    def _headers(self, key: ApiKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.secret}"}

    def _envelope_error(
        self, response: httpx.Response, payload: dict[str, Any], key: ApiKey
    ) -> VidqueueError:
        """A 200 whose envelope code is not "success": a code vidqueue knows is classified as
        on an error answer; any other is taken as a passing glitch."""
        message = payload.get("message")
        failure = HttpFailure(
            provider=self.config.name,
            status=response.status_code,
            code=str(payload["code"]),
            message=redact(message if isinstance(message, str) else "", key.secret),
            retry_after_s=None,
        )
        known = classify(failure, submitting=False)
        return known or RetryableError(failure.describe(), code=PROVIDER_PROTOCOL)

    def _poll_result(self, task: ProviderTask, dto: dict[str, Any], key: ApiKey) -> PollResult:
        name = self.config.name
        raw = dto.get("status")
        if not isinstance(raw, str) or not raw:
            raise RetryableError(f"{name}: poll answer has no status", code=PROVIDER_PROTOCOL)
        progress = _progress(dto.get("progress"))
        status = _STATUSES.get(raw)
        if status is None:
            logger.warning("%s task %s: unknown status %r, taken as running", name, task.id, raw)
            status = ProviderStatus.RUNNING
        if status is ProviderStatus.SUCCEEDED:
            return PollResult(
                status=status,
                video_url=self._video_url(task, dto),
                progress=progress,
                raw_status=raw,
            )
        if status is ProviderStatus.FAILED:
            return PollResult(
                status=status,
                error_code=PROVIDER_FAILED,
                error_message=redact(f"{name}: {_failure_reason(dto)}", key.secret),
                progress=progress,
                raw_status=raw,
            )
        return PollResult(status=status, progress=progress, raw_status=raw)

    def _video_url(self, task: ProviderTask, dto: dict[str, Any]) -> str:
        """``result_url``; else ``fail_reason`` (builds before ``result_url`` existed); else a
        Gemini-style ``url`` or ``metadata.url``; else the gateway's own content proxy."""
        metadata = dto.get("metadata")
        candidates = (
            dto.get("result_url"),
            dto.get("fail_reason"),
            dto.get("url"),
            metadata.get("url") if isinstance(metadata, dict) else None,
        )
        found = next((url for url in map(_http_url, candidates) if url), None)
        return found or f"{self.config.base_url}/v1/videos/{quote(task.id, safe='')}/content"


def _failure_reason(dto: dict[str, Any]) -> str:
    reason = dto.get("fail_reason")
    error = dto.get("error")
    if not (isinstance(reason, str) and reason.strip()) and isinstance(error, dict):
        reason = error.get("message")
    if isinstance(reason, str) and reason.strip():
        return f"task failed: {reason.strip()}"
    return "task failed (no reason given)"


# The registry's entry points (workers.providers).
ADAPTER = GatewayProvider
