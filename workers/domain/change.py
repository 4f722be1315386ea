"""What a transition writes into a job's hash besides its state and schedule, as typed values.

A step says ``Change(error=..., at_provider=False)`` instead of ``{"error": ..., "at_provider":
""}``; the store turns it into the hash's strings (``Change.hash_args``) and sends them in the
same Lua call as before, so the hash layout and the Redis commands per job stay what they were.

Every attribute defaults to ``KEEP`` (the field is not touched). ``None``, and ``False`` for a
flag, delete the field: in the hash an unset field is an absent one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Final, Literal

from pydantic import BaseModel

from workers.domain.jobs import JobError
from workers.domain.row import Notify, PollMode


class Keep(Enum):
    """The "leave this field alone" marker of a ``Change`` (None already means "delete")."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP

# The counters a transition may increment by one (``Store.transition(incr=...)``).
CounterName = Literal["", "attempts", "polls", "mirror_attempts", "notify_attempts"]


@dataclass(frozen=True)
class Change:
    """Fields to set (a value), delete (None / False) or leave (``KEEP``). Attribute names are
    the hash's field names."""

    error: JobError | Keep | None = KEEP
    result: Mapping[str, Any] | Keep = KEEP
    completed_at: str | Keep = KEEP
    submitted_at: str | Keep = KEEP
    provider_finished_at: str | Keep = KEEP
    # True while the provider may be working on the job (its slot must stay held).
    at_provider: bool | Keep = KEEP
    # A cancel came while the submit was in flight; the submit carries it out when it ends.
    cancel_requested: bool | Keep = KEEP
    notify: Notify | Keep | None = KEEP
    poll_mode: PollMode | Keep = KEEP
    video_url: str | Keep | None = KEEP
    cover_url: str | Keep | None = KEEP
    provider_task_id: str | Keep = KEEP
    task_extra: Mapping[str, str] | Keep = KEEP
    deadline_ms: int | Keep = KEEP
    # A submit_unknown job's hold (unix ms): its slot is held from ``hold_since_ms`` until
    # ``hold_until_ms`` at most (the sweep then releases it: ``slot_released_at``, ISO 8601).
    hold_since_ms: int | Keep = KEEP
    hold_until_ms: int | Keep = KEEP
    slot_released_at: str | Keep = KEEP
    key_id: str | Keep | None = KEEP

    def hash_args(self) -> list[str]:
        """``[field, value, ...]`` for the transition script; '' deletes. Called by the store."""
        out: list[str] = []
        for name in _NAMES:
            value = getattr(self, name)
            if value is not KEEP:
                out += [name, _encoded(value)]
        return out


_NAMES: Final = tuple(f.name for f in fields(Change))


def _encoded(value: object) -> str:
    """A value as the hash stores it: flags as "1" (or absent), models and mappings as JSON."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)
