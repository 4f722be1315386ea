"""Volcengine Ark / BytePlus ModelArk: Doubao Seedance video generation.

Wire format: WIRE-FORMATS.md §4. A submit body has no request-id field, so a submit whose outcome
is unknown can never be re-sent safely nor matched to the task it may have created
(``idempotent_submit`` is False, ``reconcile`` finds nothing). Provider-specific fields come from
``spec.options`` under their wire names; ``spec.callback_url`` is vidqueue's own webhook for the
producer and is never handed to Ark (``options.callback_url`` is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.errors import (
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
    parse_failure,
    raise_for_status,
    redact,
    transport_errors,
)
from workers.providers.images import check_image

logger = logging.getLogger("vidqueue.providers.ark")

RESOLUTIONS: Final = ("480p", "720p", "1080p")
RATIOS: Final = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21", "adaptive")
DURATIONS: Final = range(3, 13)
EXPIRES_AFTER_S: Final = range(3600, 259200 + 1)
# Image roles a job may ask for, as whole sets: frames and reference images do not mix.
ROLE_SETS: Final = (
    ("first_frame",),
    ("first_frame", "last_frame"),
    ("reference_image",),
    ("reference_image", "reference_image"),
)
# QuotaExceeded comes as a 429, but the quota will not refill within seconds: wait the longest
# countdown the pipeline allows.
QUOTA_RETRY_S: Final = 60.0
_REFUSED: Final = {
    "size": "ark takes options.resolution (480p|720p|1080p) and options.ratio instead",
    "fps": "Seedance renders at 24 fps; ark takes no fps",
    "quality": "ark has no quality; use options.resolution",
    "negative_prompt": "ark takes no negative prompt",
}

Check = Callable[[object], bool]


def _one_of(*values: str) -> tuple[Check, str]:
    return (lambda value: value in values), " | ".join(values)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_BOOL: Final[tuple[Check, str]] = (lambda value: isinstance(value, bool), "true or false")
# `options` keys, under their wire names, with what each accepts.
OPTIONS: Final[dict[str, tuple[Check, str]]] = {
    "resolution": _one_of(*RESOLUTIONS),
    "ratio": _one_of(*RATIOS),
    "frames": (_positive_int, "a positive integer"),
    "camera_fixed": _BOOL,
    "watermark": _BOOL,
    "return_last_frame": _BOOL,
    "callback_url": (
        lambda value: isinstance(value, str) and value.startswith(("http://", "https://")),
        "an http(s) URL",
    ),
    "service_tier": _one_of("default", "flex"),
    "execution_expires_after": (
        lambda value: _positive_int(value) and value in EXPIRES_AFTER_S,
        "whole seconds from 3600 to 259200",
    ),
    "image_roles": (
        lambda value: isinstance(value, list) and all(isinstance(r, str) for r in value),
        "a list of roles: first_frame, last_frame or reference_image",
    ),
}

_STATUSES: Final = {
    "queued": ProviderStatus.QUEUED,
    "running": ProviderStatus.RUNNING,
    "succeeded": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
    "expired": ProviderStatus.FAILED,  # execution_expires_after passed before it ran
    "cancelled": ProviderStatus.CANCELLED,
}
_ACTIVE: Final = (ProviderStatus.QUEUED, ProviderStatus.RUNNING)


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when Ark cannot take ``spec``."""
    for name, why in _REFUSED.items():
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, why)
    if spec.duration is not None and spec.duration not in DURATIONS:
        raise InvalidSpec("duration", "must be 3 to 12 seconds for ark")
    for key, value in spec.options.items():
        if key not in OPTIONS:
            raise InvalidSpec(f"options.{key}", f"ark takes only options {', '.join(OPTIONS)}")
        accepts, expected = OPTIONS[key]
        if not accepts(value):
            raise InvalidSpec(f"options.{key}", f"must be {expected}, got {value!r}")
    if "frames" in spec.options and spec.duration is not None:
        raise InvalidSpec("options.frames", "give duration or options.frames, not both")
    for image in spec.images:
        if not image.startswith("asset://"):
            check_image(image)
    image_roles(spec)
    _check_model_inputs(spec)


def image_roles(spec: JobSpec) -> list[str]:
    """The role of each image: first frame (+ last frame) unless ``options.image_roles`` says."""
    given = spec.options.get("image_roles")
    if given is None:
        return ["first_frame", "last_frame"][: len(spec.images)]
    roles = [str(role) for role in given]
    if len(roles) != len(spec.images):
        raise InvalidSpec(
            "options.image_roles", f"needs one role per image ({len(spec.images)}), got {roles}"
        )
    if tuple(roles) not in ROLE_SETS:
        allowed = "; ".join(", ".join(roles) for roles in ROLE_SETS)
        raise InvalidSpec("options.image_roles", f"must be one of: {allowed}; got {roles}")
    return roles


def _check_model_inputs(spec: JobSpec) -> None:
    """Seedance lite comes as a text-only (-t2v) and an image-only (-i2v) model."""
    if "-t2v" in spec.model and spec.images:
        raise InvalidSpec("image", f"{spec.model} is text-to-video and takes no image")
    if "-i2v" in spec.model and not spec.images:
        raise InvalidSpec("image", f"{spec.model} is image-to-video and needs an image")


def request_body(spec: JobSpec) -> dict[str, Any]:
    """The submit body; fields the spec leaves unset are left out (Ark's defaults apply)."""
    content: list[dict[str, Any]] = []
    if spec.prompt and spec.prompt.strip():
        content.append({"type": "text", "text": spec.prompt})
    for url, role in zip(spec.images, image_roles(spec), strict=True):
        content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
    body: dict[str, Any] = {"model": spec.model, "content": content}
    fields = {"duration": spec.duration, "seed": spec.seed, "generate_audio": spec.with_audio}
    body.update({name: value for name, value in fields.items() if value is not None})
    body.update({key: value for key, value in spec.options.items() if key != "image_roles"})
    return body


def classify(failure: HttpFailure) -> VidqueueError | None:
    """Ark's error codes (WIRE-FORMATS.md §4); None leaves the generic status rules."""
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
        self._client = client
        self._timeout = httpx.Timeout(config.request_timeout_s)

    def validate(self, spec: JobSpec) -> None:
        validate(spec)

    def submit(self, job_id: str, spec: JobSpec, key: ApiKey) -> ProviderTask:
        """Create the task. ``job_id`` is not sent: Ark has no field to carry it."""
        validate(spec)
        name = self.config.name
        with transport_errors(name, submitting=True):
            response = self._client.post(
                f"{self.config.base_url}/contents/generations/tasks",
                json=request_body(spec),
                headers=_headers(key),
                timeout=self._timeout,
            )
        raise_for_status(response, name, business=classify, secret=key.secret)
        task_id = json_object(response, name, submitting=True).get("id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(f"{name}: submit answered HTTP 200 without a task id")
        return ProviderTask(id=task_id)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        name = self.config.name
        response = self._get(task, key)
        raise_for_status(response, name, business=classify, secret=key.secret)
        return self._poll_result(task, json_object(response, name, submitting=False), key)

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """DELETE the task; True only once a fresh GET shows it cancelled (or gone).

        Ark cancels a *queued* task; whether DELETE stops a running one is unconfirmed, so its
        answer alone proves nothing. A finished task is left alone: DELETE would erase its record
        (and the result with it) without freeing anything. Never raises: on any doubt the answer
        is False, and the slot stays held until a poll sees the task end.
        """
        name = self.config.name
        try:
            before = self.poll(task, key)
            if before.status is ProviderStatus.CANCELLED:
                return True
            if before.status not in _ACTIVE:
                return False
            with transport_errors(name, submitting=False):
                response = self._client.delete(
                    self._task_url(task), headers=_headers(key), timeout=self._timeout
                )
            if not response.is_success:
                refused = parse_failure(response, name, secret=key.secret).describe()
                logger.info("%s task %s: cancel refused: %s", name, task.id, refused)
                return False
            after = self._get(task, key)
            if after.status_code == 404:
                return True
            raise_for_status(after, name, business=classify, secret=key.secret)
            status = json_object(after, name, submitting=False).get("status")
        except VidqueueError as exc:
            logger.warning("%s task %s: cancel not confirmed: %s", name, task.id, exc.message)
            return False
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

    def _get(self, task: ProviderTask, key: ApiKey) -> httpx.Response:
        with transport_errors(self.config.name, submitting=False):
            return self._client.get(
                self._task_url(task), headers=_headers(key), timeout=self._timeout
            )

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
