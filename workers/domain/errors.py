"""One error tree for everything vidqueue raises.

Provider and transport errors are classified exactly once, at the provider boundary
(``workers.providers.http``): afterwards the pipeline only asks "retryable or permanent?".
Every error that ends a job carries a stable ``code`` that lands in the job record.
"""

from __future__ import annotations

from typing import Final

import redis

# The root of the tree lives in config.errors (config must not import workers); re-exported here.
from config.errors import ConfigError as ConfigError
from config.errors import VidqueueError as VidqueueError

# Stable `error.code` values written into job records (a contract: producers switch on them).
INVALID_SPEC: Final = "invalid_spec"
PROVIDER_UNAVAILABLE: Final = "provider_unavailable"
RATE_LIMITED: Final = "rate_limited"
CONCURRENCY_LIMITED: Final = "concurrency_limited"
AUTH_FAILED: Final = "auth_failed"
PERMISSION_DENIED: Final = "permission_denied"
INVALID_REQUEST: Final = "invalid_request"
CONTENT_POLICY: Final = "content_policy"
INSUFFICIENT_BALANCE: Final = "insufficient_balance"
QUOTA_EXCEEDED: Final = "quota_exceeded"
MODEL_NOT_FOUND: Final = "model_not_found"
PROVIDER_FAILED: Final = "provider_failed"
PROVIDER_PROTOCOL: Final = "provider_protocol_error"
TIMEOUT: Final = "timeout"
SUBMIT_UNKNOWN: Final = "submit_unknown"
RESULT_URL_EXPIRED: Final = "result_url_expired"
MIRROR_FAILED: Final = "mirror_failed"
STORAGE_UNAVAILABLE: Final = "storage_unavailable"
CANCELLED: Final = "cancelled"


class InvalidSpec(VidqueueError):
    """A job spec a producer sent cannot be accepted. ``field`` names the offending field."""

    code = INVALID_SPEC

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TenantNotAllowed(VidqueueError):
    """A job names a fair-share tenant its API token may not use (the HTTP API answers 403).
    Not an ``InvalidSpec``: the spec is well formed; this caller may not send it."""

    code = "tenant_not_allowed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RetryableError(VidqueueError):
    """A transient failure: try the same step again later, ideally after ``retry_after_s``."""

    code = PROVIDER_UNAVAILABLE

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class PermanentError(VidqueueError):
    """A failure that trying again cannot fix (auth, bad request, content policy, balance)."""

    code = INVALID_REQUEST


class SubmitOutcomeUnknown(VidqueueError):
    """The submit request was sent, but no answer came back: the provider may have accepted it.

    Never re-send such a submit blindly: only with the same idempotency id, or not at all.
    """

    code = SUBMIT_UNKNOWN


class DuplicateSubmission(VidqueueError):
    """The provider says it already has a task for this job's request id, without naming it."""

    code = SUBMIT_UNKNOWN


class ResultUrlExpired(VidqueueError):
    """A result URL no longer serves the file (403/404/410 from the media host)."""

    code = RESULT_URL_EXPIRED


class CancelRefused(VidqueueError):
    """The job is past the point where cancelling means anything (mirroring or finished)."""

    code = "cannot_cancel"


class InvalidCursor(VidqueueError):
    """A cursor (or ``after`` id) this index cannot continue from."""

    code = "invalid_cursor"


class IdempotencyConflict(VidqueueError):
    """The idempotency key was already used with a different job spec or by another producer."""

    code = "idempotency_conflict"

    def __init__(self, message: str, *, field: str = "idempotency_key") -> None:
        super().__init__(message)
        self.field = field


class Throttled(RetryableError):
    """No request token for this key right now; try the step again after ``retry_after_s``."""

    code = RATE_LIMITED


class NotReplicated(VidqueueError, redis.ConnectionError):
    """Fewer Redis replicas than ``VIDQUEUE_REDIS_WAIT_REPLICAS`` confirmed a write in time, so
    a failover now could lose it. Also a Redis ``ConnectionError``: whoever waits out an
    unreachable Redis waits this out too; the API answers 503, and the submit step sends
    nothing on a mark that could vanish (``workers.redis.replicas``)."""

    code = "not_replicated"

    def __init__(self, wanted: int, acked: int, timeout_ms: int) -> None:
        super().__init__(
            f"the job store confirmed the write on {acked} of {wanted} replicas within "
            f"{timeout_ms} ms; try again"
        )
        self.wanted, self.acked = wanted, acked


class JobNotFound(VidqueueError, KeyError):
    """No job with this id (never created, purged, or past its retention), or not the caller's.

    A ``KeyError`` too, so the Python client's documented ``except KeyError`` keeps working;
    but only this class means "no such job": a bug's ``KeyError`` is never taken for a 404.
    """

    code = "not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id

    def __str__(self) -> str:  # KeyError's own would quote the message
        return self.message


class UploadTooLarge(InvalidSpec):
    """An upload over ``workers.io.uploads.MAX_UPLOAD_BYTES``, refused before it is sent to S3
    (the HTTP API answers it with a 413, other refused uploads with a 422)."""


class TransitionNotAllowed(ValueError):
    """A step asked for a state change ``NEXT`` does not allow: a bug in the step, refused before
    Redis is touched. A raise, not an ``assert``: the rule must hold under ``python -O`` too."""
