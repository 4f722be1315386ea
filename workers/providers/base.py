"""The provider seam: one small Protocol that every wire-format adapter implements.

Adapters only translate between vidqueue's domain types and a provider's JSON; HTTP errors are
translated to vidqueue's error tree in one place (``workers.providers.http``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from config.providers import ApiKey, ProviderConfig
from workers.domain.jobs import JobSpec, ProviderStatus


@dataclass(frozen=True)
class ProviderTask:
    """A task accepted by a provider. ``extra`` holds what a later poll needs (e.g. a family)."""

    id: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PollResult:
    status: ProviderStatus
    video_url: str | None = None
    cover_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    progress: float | None = None
    # The provider's own hint for when to ask again (Retry-After, openai-poll-after-ms).
    poll_after_s: float | None = None
    raw_status: str = ""
    # When the provider says the task finished (unix seconds), where its format tells.
    finished_at: float | None = None


TERMINAL_STATUSES = (ProviderStatus.SUCCEEDED, ProviderStatus.FAILED, ProviderStatus.CANCELLED)


def with_finish_time(result: PollResult, stamp: Any, *, millis: bool = False) -> PollResult:
    """``result`` with the provider's own finish timestamp (unix s or ms), when it is terminal
    and the timestamp is a plausible number: it measures vidqueue's detection lag."""
    if result.status not in TERMINAL_STATUSES or isinstance(stamp, bool):
        return result
    if not isinstance(stamp, int | float) or stamp <= 0:
        return result
    return replace(result, finished_at=stamp / 1000 if millis else float(stamp))


class VideoProvider(Protocol):
    """One provider wire format. Implementations must be safe to share across threads."""

    config: ProviderConfig
    # True when a re-sent submit carrying the job id cannot create a second paid task.
    idempotent_submit: bool

    def validate(self, spec: JobSpec) -> None:
        """Raise ``InvalidSpec`` naming the field when the model cannot take this spec."""

    def submit(
        self, job_id: str, spec: JobSpec, key: ApiKey, *, callback_url: str | None = None
    ) -> ProviderTask:
        """Create the provider task. The job id is sent as the request / idempotency id.
        ``callback_url``, vidqueue's own (a hint to poll now), is sent only where
        ``accepts_callback``; with None the request is what it was without callbacks. It bears a
        per-job token: no error message or log line ever shows it."""

    def accepts_callback(self, spec: JobSpec) -> bool:
        """True exactly when ``submit(..., callback_url=…)`` puts the URL in the request."""

    def producer_callback_field(self, spec: JobSpec) -> str | None:
        """The spec field by which ``spec`` already sets the provider's callback URL itself
        (e.g. ``options.callback_url``), if it does; else None. Only reported, never refused."""

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        """Fetch the task's status, normalised."""

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """Headers for fetching a result URL (auth only for the provider's own host)."""

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """Ask the provider to stop the task. True only if the provider no longer counts it
        against the key's concurrency (its slot may be freed); False where there is no cancel."""

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """Find the task a submit with an unknown outcome may have created, by the job id the
        submit carried (e.g. Kling's external_task_id); None where the provider cannot tell."""
