"""Zhipu AI (bigmodel.cn / Z.ai): CogVideoX and the Vidu models Zhipu hosts.

Wire format: WIRE-FORMATS.md §1 and the official CogVideoX API reference. The job id goes out
as ``request_id``; Zhipu refuses a repeated one with business code 1231, so re-sending a submit
whose outcome is unknown can never start a second paid generation (``idempotent_submit``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.errors import (
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
from workers.providers.jwt import Minted, TokenCache, sign_hs256

logger = logging.getLogger("vidqueue.providers.zhipu")

COGVIDEOX: Final = ("cogvideox-flash", "cogvideox-2", "cogvideox-3")
# Vidu models Zhipu hosts, with how many images each takes (min, max): their rules stay light.
VIDU_IMAGES: Final = {
    "viduq1-text": (0, 0),
    "viduq1-image": (1, 1),
    "viduq1-start-end": (2, 2),
    "vidu2-image": (1, 1),
    "vidu2-start-end": (2, 2),
    "vidu2-reference": (1, 2),
}
MODELS: Final = COGVIDEOX + tuple(VIDU_IMAGES)
_SHARED_SIZES: Final = ("1024x1024", "1920x1080", "1080x1920", "2048x1080", "3840x2160")
SIZES: Final = {
    "cogvideox-3": ("1280x720", "720x1280", *_SHARED_SIZES),
    # From the official CogVideoX reference, the only source for cogvideox-2's list.
    "cogvideox-2": ("720x480", "1280x960", "960x1280", *_SHARED_SIZES),
}
QUALITIES: Final = ("speed", "quality")
FPS: Final = (30, 60)
DURATIONS: Final = (5, 10)
# The Z.ai OpenAPI caps the prompt at 512 characters; the vendor docs say 512 *tokens*, which
# usually allows more characters. Which one is current is unconfirmed, so the stricter one holds.
MAX_PROMPT_CHARS: Final = 512
# Zhipu's own key form, ``<id>.<secret>``: with ``auth = "jwt"`` it signs a JWT (legacy mode).
LEGACY_KEY: Final = re.compile(r"^([0-9A-Za-z]+)\.([0-9A-Za-z]+)$")
TOKEN_LIFETIME_S: Final = 210  # what the SDK gives its tokens
TOKEN_REFRESH_S: Final = 30
# 1304 = the account's daily call limit: asking again within minutes only burns retries.
DAILY_LIMIT_RETRY_S: Final = 600.0


@dataclass(frozen=True)
class _Option:
    accepts: Callable[[object], bool]
    expected: str


def _one_of(*values: str) -> _Option:
    return _Option(lambda value: value in values, " | ".join(values))


_BOOL: Final = _Option(lambda value: isinstance(value, bool), "true or false")
# `options` keys passed into the body as they are: those every model takes, then Vidu's own.
OPTIONS: Final = {
    "user_id": _Option(
        lambda value: isinstance(value, str) and 6 <= len(value) <= 128,
        "a string of 6-128 characters",
    ),
    "watermark_enabled": _BOOL,
    "off_peak": _BOOL,
}
VIDU_OPTIONS: Final = {
    "style": _one_of("general", "anime"),
    "aspect_ratio": _one_of("16:9", "9:16", "1:1"),
    "movement_amplitude": _one_of("auto", "small", "medium", "large"),
}

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


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when Zhipu's ``spec.model`` cannot take ``spec``."""
    if spec.model not in MODELS:
        raise InvalidSpec("model", f"unknown model {spec.model!r}; zhipu has {', '.join(MODELS)}")
    for name in ("seed", "negative_prompt"):
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, "zhipu does not take it")
    if spec.prompt is not None and len(spec.prompt) > MAX_PROMPT_CHARS:
        raise InvalidSpec("prompt", f"at most {MAX_PROMPT_CHARS} characters for zhipu")
    _check_options(spec)
    check_images(spec.images)
    if spec.model in VIDU_IMAGES:
        _check_vidu(spec)
    else:
        _check_cogvideox(spec)


def _check_options(spec: JobSpec) -> None:
    allowed = OPTIONS | VIDU_OPTIONS if spec.model in VIDU_IMAGES else OPTIONS
    for key, value in spec.options.items():
        option = allowed.get(key)
        if option is None:
            raise InvalidSpec(
                f"options.{key}", f"{spec.model} takes only options {', '.join(allowed)}"
            )
        if not option.accepts(value):
            raise InvalidSpec(f"options.{key}", f"must be {option.expected}, got {value!r}")


def _check_cogvideox(spec: JobSpec) -> None:
    if spec.model == "cogvideox-flash":
        for name in ("quality", "size", "fps"):
            if getattr(spec, name) is not None:
                raise InvalidSpec(name, "cogvideox-flash does not take it")
    if spec.quality is not None and spec.quality not in QUALITIES:
        raise InvalidSpec("quality", f"must be one of {', '.join(QUALITIES)}")
    if spec.fps is not None and spec.fps not in FPS:
        raise InvalidSpec("fps", "must be 30 or 60")
    if spec.duration is not None and spec.duration not in DURATIONS:
        raise InvalidSpec("duration", "must be 5 or 10 seconds")
    sizes = SIZES.get(spec.model, ())
    if spec.size is not None and spec.size not in sizes:
        raise InvalidSpec("size", f"{spec.model} takes one of {', '.join(sizes)}")
    if len(spec.images) == 2 and spec.quality not in (None, "speed"):
        raise InvalidSpec("image", 'first and last frame (two images) need quality "speed"')


def _check_vidu(spec: JobSpec) -> None:
    low, high = VIDU_IMAGES[spec.model]
    if not low <= len(spec.images) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise InvalidSpec("image", f"{spec.model} takes {wanted} image(s)")


def request_body(job_id: str, spec: JobSpec) -> dict[str, Any]:
    """The submit body; fields the spec leaves unset are left out (Zhipu's defaults apply)."""
    images = spec.images
    fields: dict[str, Any] = {
        "model": spec.model,
        "prompt": spec.prompt,
        "image_url": images[0] if len(images) == 1 else images or None,
        "quality": spec.quality,
        "with_audio": spec.with_audio,
        "size": spec.size,
        "fps": spec.fps,
        "duration": spec.duration,
    }
    body = {name: value for name, value in fields.items() if value is not None}
    body.update(spec.options)
    body["request_id"] = job_id
    return body


def classify(failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
    """Zhipu's business codes (WIRE-FORMATS.md §1); None leaves the generic status rules."""
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
        self._client = client
        self._timeout = httpx.Timeout(config.request_timeout_s)
        self._tokens = TokenCache(refresh_s=TOKEN_REFRESH_S, clock=clock)

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        validate(spec)
        name = self.config.name
        with transport_errors(name, submitting=True):
            response = self._client.post(
                f"{self.config.base_url}/videos/generations",
                json=request_body(job_id, spec),
                headers=self._headers(key),
                timeout=self._timeout,
            )
        business = partial(classify, submitting=True)
        raise_for_status(response, name, business=business, secret=key.secret)
        payload = json_object(response, name, submitting=True)
        task_id = payload.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            # A 200 was sent for this request: the task may well exist, only its id is missing.
            raise SubmitOutcomeUnknown(f"{name}: submit answered HTTP 200 without a task id")
        return ProviderTask(id=task_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        name = self.config.name
        with transport_errors(name, submitting=False):
            response = self._client.get(
                f"{self.config.base_url}/async-result/{quote(task.id, safe='')}",
                headers=self._headers(key),
                timeout=self._timeout,
            )
        business = partial(classify, submitting=False)
        raise_for_status(response, name, business=business, secret=key.secret)
        payload = json_object(response, name, submitting=False)
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
