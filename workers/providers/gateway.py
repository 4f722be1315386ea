"""A new-api-style gateway (QuantumNous/new-api): many vendors behind one token.

Wire format: docs/wire-formats.md §3, the generic routes ``POST /v1/video/generations`` and
``GET /v1/video/generations/{task_id}``. The model picks the upstream vendor ("family"); the
spec's ``options`` go into ``metadata``, which the gateway merges into the vendor's own body, so
they are checked against that vendor's fields. The gateway takes no idempotency id of its own,
so ``idempotent_submit`` is False; for Kling the job id goes upstream as ``external_task_id``.
vidqueue's callback URL goes as ``metadata.callback_url``, only to the families whose vendor
body reads it (Kling, Vidu, Doubao); a producer's own would be ``options.callback_url``.

Result URLs are usually the vendor's (public, expiring); older builds put the URL in
``fail_reason``; failing both, the gateway's own ``/v1/videos/{task_id}/content`` proxy serves
the file, and only that proxy (on the gateway's base URL) is sent the token. What a spec may
hold per vendor, and the submit built from it: ``workers.providers.gateway_spec``.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey
from workers.domain import errors
from workers.domain.errors import (
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import JsonAdapter, SubmitRequest, text
from workers.providers.base import ProviderTask, VideoProvider
from workers.providers.gateway_spec import accepts_callback, request_body, validate
from workers.providers.http import HttpFailure, redact

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
    "insufficient_user_quota": errors.INSUFFICIENT_BALANCE,
    "pre_consume_token_quota_failed": errors.INSUFFICIENT_BALANCE,
    "model_not_found": errors.MODEL_NOT_FOUND,
    "sensitive_words_detected": errors.CONTENT_POLICY,
    "access_denied": errors.PERMISSION_DENIED,
    "not_implemented": errors.INVALID_REQUEST,  # HTTP 501: the channel cannot do this at all
}


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """new-api's task and middleware codes (docs/wire-formats.md §3); None: the generic rules."""
    code, message = failure.code or "", failure.describe()
    if submitting and (code == "do_request_failed" or failure.status == 504):
        # The gateway lost its upstream call (or a proxy timed out) after sending it.
        return SubmitOutcomeUnknown(f"{message}; the upstream may have accepted the task")
    if failure.status == 429 and any(mark in failure.message for mark in SATURATED):
        return RetryableError(
            message, code=errors.CONCURRENCY_LIMITED, retry_after_s=failure.retry_after_s
        )
    if code == "task_not_exist" and not submitting:
        return PermanentError(
            f"{message}: the gateway has no such task", code=errors.PROVIDER_FAILED
        )
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


class GatewayProvider(JsonAdapter):
    """The ``gateway`` adapter. The gateway has no cancel route (a task keeps its slot until it
    ends) and looks tasks up only by its own task id: Kling's external_task_id is not queryable
    through it, so an unknown submit cannot be reconciled. The token goes only to the gateway's
    own content proxy (``download_needs_key``); vendor URLs are public."""

    validate = staticmethod(validate)
    business = staticmethod(classify)
    accepts_callback = staticmethod(accepts_callback)
    log = logger
    poll_route = "/v1/video/generations/{id}"
    statuses = _STATUSES
    finish_field = "finish_time"
    download_needs_key = True
    # Options become `metadata`, merged into the vendor's body: this key sets its callback.
    callback_option = "callback_url"

    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        body = request_body(job_id, spec, callback_url)
        return SubmitRequest("/v1/video/generations", {"json": body})

    def task_id(self, payload: dict[str, Any]) -> str | None:
        """``task_id``, else ``id``, of either the envelope's TaskDto or the flat answer."""
        dto = task_dto(payload)
        return text(dto.get("task_id") or dto.get("id"))

    def poll_answer(
        self, response: httpx.Response, payload: dict[str, Any], key: ApiKey
    ) -> dict[str, Any]:
        """The TaskDto, once the envelope's code says "success" (or is absent)."""
        envelope_code = payload.get("code")
        if isinstance(envelope_code, str) and envelope_code not in ("success", ""):
            raise self._envelope_error(response, payload, key)
        return task_dto(payload)

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
        known = self.business(failure, submitting=False)
        return known or RetryableError(failure.describe(), code=errors.PROVIDER_PROTOCOL)

    def progress(self, answer: dict[str, Any]) -> float | None:
        return _progress(answer.get("progress"))

    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        """``result_url``; else ``fail_reason`` (builds before ``result_url`` existed); else a
        Gemini-style ``url`` or ``metadata.url``; else the gateway's own content proxy. No
        cover: the format has none."""
        metadata = answer.get("metadata")
        candidates = (
            answer.get("result_url"),
            answer.get("fail_reason"),
            answer.get("url"),
            metadata.get("url") if isinstance(metadata, dict) else None,
        )
        found = next((url for url in map(_http_url, candidates) if url), None)
        proxy = f"{self.config.base_url}/v1/videos/{quote(task.id, safe='')}/content"
        return found or proxy, None

    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        return errors.PROVIDER_FAILED, _failure_reason(answer)


def _failure_reason(dto: dict[str, Any]) -> str:
    reason = dto.get("fail_reason")
    error = dto.get("error")
    if not (isinstance(reason, str) and reason.strip()) and isinstance(error, dict):
        reason = error.get("message")
    if isinstance(reason, str) and reason.strip():
        return f"task failed: {reason.strip()}"
    return "task failed (no reason given)"


# The registry's entry point (workers.providers); typed so that mypy checks it fits the seam.
ADAPTER: type[VideoProvider] = GatewayProvider
