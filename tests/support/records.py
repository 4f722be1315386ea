"""The public job record's fields (docs/design.md §6): a contract, written out once for the
tests that check it (not read from ``JobRecord``, which they test)."""

from __future__ import annotations

RECORD_FIELDS = {
    "id",
    "state",
    "provider",
    "model",
    "spec",
    "provider_task_id",
    "attempts",
    "polls",
    "created_at",
    "submitted_at",
    "provider_finished_at",
    "completed_at",
    "error",
    "result",
    "callbacks_armed",
    "reused_from",
}
