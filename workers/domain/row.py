"""A job's Redis hash as typed values: what the steps read, instead of a ``dict[str, str]``.

The hash layout (field names, ``"1"`` for a flag, an absent field for "unset") is a contract
(``workers.redis.store``'s docstring). Only the store converts: it builds a ``JobRow`` with
``JobRow.from_hash`` when it reads or claims a job, and a ``DueJob`` from what a due poller took,
so no step parses a string. Everything a step reads is decoded once here; what only some steps
need (the spec, the error, the result) is parsed on first use, since the poll, the hot path,
never reads them.

The provider's task is kept as its id and ``extra`` (``workers.providers.base.ProviderTask`` lives
in a layer above this one); ``workers.steps.endings.provider_task`` builds it from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Final, Literal

from workers.domain.jobs import JobError, JobRecord, JobSpec, State
from workers.domain.lean import full_result, full_spec


class Notify(StrEnum):
    """Where a job's webhook stands (the hash's ``notify``; unset: no webhook to send)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class PollMode(StrEnum):
    """How the poll chain is spaced: ``steady`` once the first poll was learned from the
    model's recent generation times, ``backoff`` while nothing is known about the model,
    ``safety`` when the provider calls back (its callbacks are armed: docs/callbacks.md)."""

    STEADY = "steady"
    BACKOFF = "backoff"
    SAFETY = "safety"


DueKind = Literal["send", "resend", "check"]
_DUE_KINDS: Final[dict[str, DueKind]] = {"send": "send", "resend": "resend", "check": "check"}


@dataclass(frozen=True)
class JobRow:
    """One job as the pipeline sees it: the public record's fields plus the internal ones.

    Unset text fields are None, unset counters 0, flags False. ``deadline_ms`` (unix ms, 0 when
    unset) is when the provider's deadline for the job runs out. Timestamps are the record's
    ISO 8601 strings (``parse_iso`` where a step needs the moment): parsing four of them on
    every claim would be work the hot path does not need.
    """

    id: str
    state: State
    provider: str
    model: str
    created_at: str
    spec_json: str = field(repr=False)
    # The fair-share key and the waiting-set score (opaque: handed back to the gate as it is).
    fair: str = ""
    score: str = ""
    key_id: str | None = None
    attempts: int = 0
    polls: int = 0
    mirror_attempts: int = 0
    notify_attempts: int = 0
    provider_task_id: str | None = None
    task_extra: Mapping[str, str] = field(default_factory=dict, hash=False)
    at_provider: bool = False
    cancel_requested: bool = False
    notify: Notify | None = None
    poll_mode: PollMode | None = None
    submitted_at: str | None = None
    provider_finished_at: str | None = None
    completed_at: str | None = None
    deadline_ms: int = 0
    # A submit_unknown job's slot hold (unix ms, 0 when unset), and when the sweep released it.
    hold_since_ms: int = 0
    hold_until_ms: int = 0
    slot_released_at: str | None = None
    video_url: str | None = None
    cover_url: str | None = None
    error_json: str | None = field(default=None, repr=False)
    result_json: str | None = field(default=None, repr=False)
    # The job that generated this one's result, when it took a finished one (reuse_within_s).
    reused_from: str | None = None

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> JobRow:
        """The row of a job hash (decoded strings). Called by the store only."""
        extra = fields.get("task_extra")
        notify = fields.get("notify")
        mode = fields.get("poll_mode")
        return cls(
            id=fields["id"],
            state=State(fields["state"]),
            provider=fields["provider"],
            model=fields["model"],
            created_at=fields["created_at"],
            spec_json=fields["spec"],
            fair=fields.get("fair", ""),
            score=fields.get("score", ""),
            key_id=fields.get("key_id") or None,
            attempts=int(fields.get("attempts") or 0),
            polls=int(fields.get("polls") or 0),
            mirror_attempts=int(fields.get("mirror_attempts") or 0),
            notify_attempts=int(fields.get("notify_attempts") or 0),
            provider_task_id=fields.get("provider_task_id") or None,
            task_extra=json.loads(extra) if extra else {},
            at_provider=fields.get("at_provider") == "1",
            cancel_requested=bool(fields.get("cancel_requested")),
            notify=Notify(notify) if notify else None,
            poll_mode=PollMode(mode) if mode else None,
            submitted_at=fields.get("submitted_at") or None,
            provider_finished_at=fields.get("provider_finished_at") or None,
            completed_at=fields.get("completed_at") or None,
            deadline_ms=int(fields.get("deadline_ms") or 0),
            hold_since_ms=int(fields.get("hold_since_ms") or 0),
            hold_until_ms=int(fields.get("hold_until_ms") or 0),
            slot_released_at=fields.get("slot_released_at") or None,
            video_url=fields.get("video_url") or None,
            cover_url=fields.get("cover_url") or None,
            error_json=fields.get("error") or None,
            result_json=fields.get("result") or fields.get("shared_result") or None,
            reused_from=fields.get("reused_from") or None,
        )

    @property
    def slot_key_id(self) -> str:
        """The API key holding the job's slot. A job a step works on always holds one, so a
        missing one is a broken record: ``KeyError``, as reading the hash field was."""
        if self.key_id is None:
            raise KeyError(f"job {self.id} holds no slot (no key_id)")
        return self.key_id

    @cached_property
    def spec(self) -> JobSpec:
        """The job spec, validated (only the submit needs it)."""
        return JobSpec.model_validate_json(self.whole_spec_json)

    @cached_property
    def whole_spec_json(self) -> str:
        """The spec JSON as the record shows it (the hash stores it compactly, and
        ``spec_json`` is what it stores: ``workers.domain.lean``)."""
        return full_spec(self.spec_json, self.provider, self.model)

    @cached_property
    def spec_data(self) -> dict[str, Any]:
        """The spec as the record shows it, for the record and the callback URL: no
        validation."""
        data: dict[str, Any] = json.loads(self.whole_spec_json)
        return data

    @property
    def callback_url(self) -> str | None:
        url = self.spec_data.get("callback_url")
        return str(url) if url else None

    @cached_property
    def error(self) -> JobError | None:
        return JobError.model_validate_json(self.error_json) if self.error_json else None

    @cached_property
    def result(self) -> dict[str, Any] | None:
        return full_result(self.result_json) if self.result_json else None

    def record(self) -> JobRecord:
        """The public record (docs/design.md §6); internal fields stay behind."""
        return JobRecord(
            id=self.id,
            state=self.state,
            provider=self.provider,
            model=self.model,
            spec=self.spec_data,
            provider_task_id=self.provider_task_id,
            attempts=self.attempts,
            polls=self.polls,
            created_at=self.created_at,
            submitted_at=self.submitted_at,
            provider_finished_at=self.provider_finished_at,
            completed_at=self.completed_at,
            error=self.error,
            result=self.result,
            callbacks_armed=self.poll_mode == PollMode.SAFETY,
            reused_from=self.reused_from,
        )


@dataclass(frozen=True)
class DueJob:
    """A job whose step fell due, with the few fields a due poller reads (``DUE_FIELDS`` of
    ``workers.redis.store_scripts``). ``kind``: ``send`` (publish it), ``resend`` (its claim
    lapsed: publish it again) or ``check`` (sent but never claimed: lost, or still queued?)."""

    job_id: str
    kind: DueKind
    state: State
    provider: str
    sent_ms: int | None = None
    key_id: str | None = None
    at_provider: bool = False
    provider_task_id: str | None = None
    notify: Notify | None = None
    provider_finished_at: str | None = None

    @classmethod
    def from_hash(cls, job_id: str, kind: str, fields: Mapping[str, str]) -> DueJob:
        """From what ``TAKE_DUE`` returned: the kind, the due fields' values ('' when unset).
        Called by the store only."""
        sent, notify = fields.get("sent"), fields.get("notify")
        return cls(
            job_id=job_id,
            kind=_DUE_KINDS[kind],
            state=State(fields["state"]),
            provider=fields.get("provider", ""),
            sent_ms=int(sent) if sent else None,
            key_id=fields.get("key_id") or None,
            at_provider=fields.get("at_provider") == "1",
            provider_task_id=fields.get("provider_task_id") or None,
            notify=Notify(notify) if notify else None,
            provider_finished_at=fields.get("provider_finished_at") or None,
        )
