"""Domain types: job states and their allowed transitions, the job spec, the job record.

The spec and record shapes are contracts (docs/design.md §6): other programs parse them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from workers.domain.errors import TransitionNotAllowed


class State(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMIT_UNKNOWN = "submit_unknown"
    RUNNING = "running"
    MIRRORING = "mirroring"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: Final = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

# Every transition the store allows; anything else is refused by the compare-and-set.
NEXT: Final[dict[State, frozenset[State]]] = {
    State.QUEUED: frozenset({State.SUBMITTING, State.CANCELLED, State.FAILED}),
    # Back to queued only when the provider certainly did not accept the request.
    State.SUBMITTING: frozenset(
        {State.RUNNING, State.QUEUED, State.SUBMIT_UNKNOWN, State.FAILED, State.CANCELLED}
    ),
    State.SUBMIT_UNKNOWN: frozenset({State.RUNNING, State.FAILED, State.CANCELLED}),
    State.RUNNING: frozenset({State.MIRRORING, State.FAILED, State.CANCELLED}),
    State.MIRRORING: frozenset({State.SUCCEEDED, State.FAILED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def check_transition(allowed: Iterable[State], to: State) -> None:
    """Raise ``TransitionNotAllowed`` unless every state in ``allowed`` may move to ``to``."""
    bad = [s for s in allowed if s != to and to not in NEXT[s]]
    if bad:
        moves = ", ".join(f"{s} -> {to}" for s in bad)
        raise TransitionNotAllowed(f"transition {moves} is not allowed (workers.domain.jobs.NEXT)")


class ProviderStatus(StrEnum):
    """A provider's task status, normalised (docs/wire-formats.md, table at the top)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
MAX_LABELS: Final = 32


class JobSpec(BaseModel):
    """What a producer sends. Provider-specific rules are checked by the provider's adapter.

    Strict: no value is coerced (``"9"`` or ``true`` is not a priority, ``1`` is not
    ``with_audio``, a number is not a string); a wrong type is refused, naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: StrictStr = Field(min_length=1, max_length=64)
    model: StrictStr = Field(min_length=1, max_length=128)
    prompt: StrictStr | None = Field(default=None, max_length=10_000)
    # An http(s) URL, a data: URI, or an upload reference; two of them = first and last frame.
    image: StrictStr | list[StrictStr] | None = None
    duration: StrictInt | None = Field(default=None, ge=1, le=3600)
    size: StrictStr | None = None
    fps: StrictInt | None = Field(default=None, ge=1, le=240)
    quality: StrictStr | None = Field(default=None, max_length=32)
    with_audio: StrictBool | None = None
    seed: StrictInt | None = Field(default=None, ge=-1, le=2**32 - 1)
    negative_prompt: StrictStr | None = Field(default=None, max_length=10_000)
    options: dict[StrictStr, Any] = Field(default_factory=dict)
    priority: StrictInt = Field(default=0, ge=0, le=9)
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    callback_url: StrictStr | None = Field(default=None, max_length=2048)
    idempotency_key: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    # Opt-in: take the result of the same generation if one succeeded (and was mirrored) this
    # many seconds ago at most, instead of generating again (workers.domain.reuse). At most a
    # day (REUSE_MAX_S there), the reuse index's memory.
    reuse_within_s: StrictInt | None = Field(default=None, ge=1, le=24 * 3600)

    @field_validator("size")
    @classmethod
    def _size_is_w_x_h(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.match(value):
            raise ValueError("must look like 1280x720")
        return value

    @field_validator("image", mode="before")
    @classmethod
    def _image_is_text(cls, value: object) -> object:
        # Refused here, a wrong type names ``image`` (not a member of the union).
        texts = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(text, str) for text in texts):
            raise ValueError("must be a string, or a list of one or two strings")
        return value

    @field_validator("image")
    @classmethod
    def _one_or_two_images(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not 1 <= len(value) <= 2:
            raise ValueError("takes one image, or two (first and last frame)")
        return value

    @field_validator("labels")
    @classmethod
    def _few_short_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        if any(not k or len(k) > 64 or len(v) > 256 for k, v in value.items()):
            raise ValueError("keys must be 1-64 characters and values at most 256")
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _prompt_or_image(self) -> JobSpec:
        if not (self.prompt and self.prompt.strip()) and not self.image:
            raise ValueError("a job needs a prompt, an image, or both")
        return self

    @property
    def images(self) -> list[str]:
        if self.image is None:
            return []
        return [self.image] if isinstance(self.image, str) else list(self.image)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-11-21T22:40:01.123456Z`` (a contract)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return isoformat(utcnow())


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class JobError(BaseModel):
    code: str
    message: str
    retryable: bool = False


class JobRecord(BaseModel):
    """What every interface returns for a job (docs/design.md §6)."""

    id: str
    state: State
    provider: str
    model: str
    spec: dict[str, Any]
    provider_task_id: str | None = None
    attempts: int = 0
    polls: int = 0
    created_at: str
    submitted_at: str | None = None
    provider_finished_at: str | None = None
    completed_at: str | None = None
    error: JobError | None = None
    result: dict[str, Any] | None = None
    # Whether the provider was asked to call back on status changes (docs/callbacks.md).
    callbacks_armed: bool = False
    # The job whose result this one took instead of generating (a spec's reuse_within_s):
    # both records point at the same S3 objects, the original's.
    reused_from: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL
