"""OpenAI Videos API (Sora 2).

Wire format: WIRE-FORMATS.md §2 (openai-python's videos resource and the video guide).
``POST /videos`` takes no idempotency id, so a submit whose outcome is unknown must never be sent
again (``idempotent_submit = False``): the pipeline parks it for reconciliation instead. The
result is not a public URL but ``GET /videos/{id}/content``, which needs the API key — so
``download_headers`` sends it, and only to this provider's own base URL.
"""

from __future__ import annotations

import base64
import logging
from functools import partial
from typing import Any, Final
from urllib.parse import SplitResult, quote, urlsplit

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.errors import (
    AUTH_FAILED,
    CONTENT_POLICY,
    INSUFFICIENT_BALANCE,
    MODEL_NOT_FOUND,
    PROVIDER_FAILED,
    PROVIDER_PROTOCOL,
    PROVIDER_UNAVAILABLE,
    InvalidSpec,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask
from workers.providers.http import (
    HttpFailure,
    json_object,
    raise_for_status,
    redact,
    transport_errors,
)
from workers.providers.images import check_images

logger = logging.getLogger("vidqueue.providers.openai")

MODELS: Final = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-pro-2025-10-06",
    "sora-2-2025-12-08",
)
# The SDK's VideoSeconds; the guide also lists 16 and 20, which the SDK types do not (unconfirmed).
SECONDS: Final = (4, 8, 12)
SIZES: Final = ("720x1280", "1280x720", "1024x1792", "1792x1024")
# 1080p needs sora-2-pro (the video guide).
PRO_SIZES: Final = ("1920x1080", "1080x1920")
# Job spec fields the Videos API has no parameter for.
UNSUPPORTED: Final = ("fps", "quality", "with_audio", "seed", "negative_prompt")
POLL_AFTER_HEADER: Final = "openai-poll-after-ms"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MIME_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg"}

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


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when OpenAI's ``spec.model`` cannot take ``spec``."""
    if spec.model not in MODELS:
        raise InvalidSpec("model", f"unknown model {spec.model!r}; openai has {', '.join(MODELS)}")
    for name in UNSUPPORTED:
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, "openai's videos API does not take it")
    if spec.options:
        first = next(iter(spec.options))
        raise InvalidSpec(f"options.{first}", "openai's videos API takes no options")
    if not (spec.prompt and spec.prompt.strip()):
        raise InvalidSpec("prompt", "openai needs a prompt, also for image-to-video")
    check_seconds_and_size(spec)
    check_images(spec.images)
    if len(spec.images) > 1:
        raise InvalidSpec("image", "openai takes one reference image (input_reference)")


def check_seconds_and_size(spec: JobSpec) -> None:
    """Sora's duration and size rules, shared with Sora models behind a gateway."""
    if spec.duration is not None and spec.duration not in SECONDS:
        raise InvalidSpec("duration", "sora takes 4, 8 or 12 seconds")
    sizes = SIZES + PRO_SIZES if "-pro" in spec.model else SIZES
    if spec.size is not None and spec.size not in sizes:
        raise InvalidSpec("size", f"{spec.model} takes one of {', '.join(sizes)}")


def under_base_url(url: str, base_url: str) -> bool:
    """True only for a URL on the same scheme, host and port as ``base_url``, below its path.

    A prefix test on the string would pass ``https://api.openai.com.evil.com/…`` or
    ``https://api.openai.com@evil.com/…``; the key must never reach another host.
    """
    try:
        target, base = urlsplit(url), urlsplit(base_url)
        same_origin = target.hostname is not None and _origin(target) == _origin(base)
    except ValueError:  # a port that is not a number
        return False
    if not same_origin:
        return False
    prefix = base.path.rstrip("/")
    return target.path == prefix or target.path.startswith(prefix + "/")


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


def request_fields(spec: JobSpec) -> dict[str, str]:
    """The text fields of the submit; ``seconds`` is a string on the wire."""
    fields = {"prompt": spec.prompt or "", "model": spec.model}
    if spec.duration is not None:
        fields["seconds"] = str(spec.duration)
    if spec.size is not None:
        fields["size"] = spec.size
    return fields


def data_uri_file(uri: str) -> tuple[str, bytes, str]:
    """``(filename, bytes, mime type)`` of a ``data:`` URI already passed by ``check_image``."""
    header, _, encoded = uri.partition(",")
    mime = header[5:].split(";")[0].lower()
    mime = "image/jpeg" if mime == "image/jpg" else mime
    return f"input_reference.{_MIME_EXTENSIONS[mime]}", base64.b64decode(encoded), mime


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """OpenAI's error codes (WIRE-FORMATS.md §2); None leaves the generic status rules."""
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
        self._client = client
        self._timeout = httpx.Timeout(config.request_timeout_s)

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        """JSON without an image or with an image URL; multipart with a ``data:`` image.

        ``job_id`` cannot be sent: the endpoint has no request id or metadata field.
        """
        validate(spec)
        name, url = self.config.name, f"{self.config.base_url}/videos"
        fields, image = request_fields(spec), next(iter(spec.images), None)
        with transport_errors(name, submitting=True):
            if image is not None and image[:5].lower() == "data:":
                response = self._client.post(
                    url,
                    data=fields,
                    files={"input_reference": data_uri_file(image)},
                    headers=self._headers(key),
                    timeout=self._timeout,
                )
            else:
                body: dict[str, Any] = dict(fields)
                if image is not None:
                    body["input_reference"] = {"image_url": image}
                response = self._client.post(
                    url, json=body, headers=self._headers(key), timeout=self._timeout
                )
        business = partial(classify, submitting=True)
        raise_for_status(response, name, business=business, secret=key.secret)
        video_id = json_object(response, name, submitting=True).get("id")
        if not isinstance(video_id, str) or not video_id:
            raise SubmitOutcomeUnknown(f"{name}: submit answered HTTP 200 without a video id")
        return ProviderTask(id=video_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        name = self.config.name
        with transport_errors(name, submitting=False):
            response = self._client.get(
                self._video_url(task.id),
                headers=self._headers(key),
                timeout=self._timeout,
            )
        business = partial(classify, submitting=False)
        raise_for_status(response, name, business=business, secret=key.secret)
        payload = json_object(response, name, submitting=False)
        return self._poll_result(task, payload, key, poll_after_s(response.headers))

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
