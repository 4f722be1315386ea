"""The simulator's knobs, declared once and validated.

Every option is a field of :class:`SimOptions`; the CLI builds one flag per field and the control
API (``POST /_sim/options``) patches them at runtime, so a new knob only needs a new field here.
Options are frozen: a change produces a new object, which keeps a task's view of the options it
was created under stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

# The ftyp, moov and mdat headers take a few hundred bytes; below this there is no room for them.
MIN_VIDEO_BYTES: Final = 1024
# A 32-bit mdat box size bounds the file; nothing in vidqueue needs videos anywhere near this.
MAX_VIDEO_BYTES: Final = 2**31


class SimOptions(BaseModel):
    """How the simulated provider behaves. Times are seconds, rates are probabilities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gen_time_s: float = Field(default=3.0, ge=0, description="mean generation time")
    gen_jitter_s: float = Field(default=0.5, ge=0, description="uniform +/- jitter on gen time")
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="chance a task ends FAIL")
    concurrency_limit: int = Field(
        default=0, ge=0, description="tasks in flight per API key (0 = unlimited)"
    )
    url_ttl_s: float = Field(
        default=3600.0, ge=0, description="life of a result URL from the poll that hands it out"
    )
    video_bytes: int = Field(
        default=262144,
        ge=MIN_VIDEO_BYTES,
        le=MAX_VIDEO_BYTES,
        description="exact size of the served MP4",
    )
    poll_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a poll answers HTTP 500"
    )
    submit_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a submit answers HTTP 500, creating nothing"
    )
    # Injected faults (simulator.faults); each one is counted by kind in /_sim/stats "faults".
    submit_429_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="chance a submit answers 429 + Retry-After, creating nothing",
    )
    poll_429_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a poll answers 429 with Retry-After"
    )
    retry_after_s: float = Field(
        default=1.0, ge=0, description="the Retry-After (seconds) of an injected 429"
    )
    submit_stall_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance an accepted submit answers only after stall_s"
    )
    submit_drop_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="chance an accepted submit's connection drops mid-answer",
    )
    stall_s: float = Field(
        default=30.0,
        ge=0,
        description="how long a stalled answer waits (past the client's timeout)",
    )
    poll_malformed_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a poll answers 200 with malformed JSON"
    )
    poll_unknown_status_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a poll answers a task_status nobody documents"
    )
    download_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a media download answers HTTP 500"
    )
    download_truncate_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a download closes before its Content-Length"
    )
    slow_download_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="chance a download is served at slow_download_bytes_per_s",
    )
    slow_download_bytes_per_s: int = Field(
        default=65536, ge=1, description="the speed of a slow download"
    )
    # Provider callbacks (simulator.callbacks): POSTs to a submit's callback_url (Kling, Ark, the
    # gateway's Kling/Vidu/Doubao models) on each status change. The knobs below bend delivery.
    callback_delay_s: float = Field(
        default=0.0, ge=0, description="extra delay before each callback is sent"
    )
    callback_loss_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a callback is never sent"
    )
    callback_dup_rate: float = Field(
        default=0.0, ge=0, le=1, description="chance a callback is sent twice"
    )
    callback_reorder: bool = Field(
        default=False, description="deliver a task's callbacks in reverse order, the last first"
    )
    callback_bad_token: bool = Field(
        default=False, description="alter the callback URL's last path segment (the job's token)"
    )
    callback_wrapped: bool = Field(
        default=False, description="Kling callbacks wrapped in {code,message,request_id,data}"
    )
    callback_retry_s: float = Field(
        default=5.0, ge=0, description="pause before each of the 3 retries of a failed callback"
    )
    seed: int | None = Field(default=None, description="seed for the RNG (default: random)")

    def patched(self, changes: Mapping[str, object]) -> SimOptions:
        """A validated copy with ``changes`` applied; raises ``pydantic.ValidationError``.

        ``model_copy(update=...)`` would skip validation, so the merged dict is re-validated.
        """
        return SimOptions.model_validate({**self.model_dump(), **changes})
