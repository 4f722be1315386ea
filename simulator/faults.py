"""Injected faults: what a flaky provider does to its clients, each at its own rate.

A wire-format module asks here at the points where a real provider misbehaves, and renders the
answer in its own error format:

- a submit refused before anything is created: HTTP 500, or 429 with ``Retry-After``;
- a submit *accepted* (the task exists and is counted) whose answer never arrives: it stalls
  past the client's timeout, or the connection drops halfway through the body. A client that
  re-sends such a submit with the same request id must be refused (Zhipu: code 1231);
- a poll answering 500, 429 with ``Retry-After``, malformed JSON, or a status nobody documents;
- a download answering 500, served slowly, or cut short (``Content-Length`` promised, connection
  closed early).

Every injected fault is counted by kind (``Counters.faults``, ``GET /_sim/stats`` → ``faults``).
Rates are the options of :class:`~simulator.options.SimOptions`, changeable at runtime.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from enum import StrEnum
from typing import Any, Final

from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from simulator.state import Registry

# A task_status that no provider documents: clients must treat it as "still running".
UNKNOWN_STATUS: Final = "RESCHEDULING"
# A 200 whose body is cut mid-object, as a crashing proxy or gateway sends it.
MALFORMED_JSON: Final = b'{"task_status": "PROCESS'


# The options that inject faults: ``POST /_sim/faults/off`` sets them all to 0. (``fail_rate`` is
# not among them: a task that ends FAIL is the provider's honest answer, not a fault.)
RATE_OPTIONS: Final = (
    "submit_error_rate",
    "submit_429_rate",
    "submit_stall_rate",
    "submit_drop_rate",
    "poll_error_rate",
    "poll_429_rate",
    "poll_malformed_rate",
    "poll_unknown_status_rate",
    "download_error_rate",
    "download_truncate_rate",
    "slow_download_rate",
    "callback_loss_rate",
    "callback_dup_rate",
)
# The on/off faults that ``POST /_sim/faults/off`` turns off with the rates.
FLAG_OPTIONS: Final = ("callback_reorder", "callback_bad_token")


class Fault(StrEnum):
    SUBMIT_500 = "submit_500"
    SUBMIT_429 = "submit_429"
    SUBMIT_STALL = "submit_stall"
    SUBMIT_DROP = "submit_drop"
    POLL_500 = "poll_500"
    POLL_429 = "poll_429"
    POLL_MALFORMED = "poll_malformed"
    POLL_UNKNOWN_STATUS = "poll_unknown_status"
    DOWNLOAD_500 = "download_500"
    DOWNLOAD_TRUNCATED = "download_truncated"
    DOWNLOAD_SLOW = "download_slow"


def _first(registry: Registry, chances: Iterable[tuple[Fault, float]]) -> Fault | None:
    """The first fault whose roll comes up, counted; None when every roll misses."""
    for fault, rate in chances:
        if registry.roll(rate):
            registry.counters.faults[fault] += 1
            return fault
    return None


def submit_refusal(registry: Registry) -> Fault | None:
    """500 or 429 before the submit is accepted (nothing is created)."""
    o = registry.options
    return _first(
        registry, ((Fault.SUBMIT_500, o.submit_error_rate), (Fault.SUBMIT_429, o.submit_429_rate))
    )


def lost_answer(registry: Registry) -> Fault | None:
    """After the submit was accepted: its answer stalls, or its connection drops."""
    o = registry.options
    return _first(
        registry,
        ((Fault.SUBMIT_STALL, o.submit_stall_rate), (Fault.SUBMIT_DROP, o.submit_drop_rate)),
    )


def poll_fault(registry: Registry) -> Fault | None:
    o = registry.options
    return _first(
        registry,
        (
            (Fault.POLL_500, o.poll_error_rate),
            (Fault.POLL_429, o.poll_429_rate),
            (Fault.POLL_MALFORMED, o.poll_malformed_rate),
            (Fault.POLL_UNKNOWN_STATUS, o.poll_unknown_status_rate),
        ),
    )


def download_fault(registry: Registry) -> Fault | None:
    o = registry.options
    return _first(
        registry,
        (
            (Fault.DOWNLOAD_500, o.download_error_rate),
            (Fault.DOWNLOAD_TRUNCATED, o.download_truncate_rate),
            (Fault.DOWNLOAD_SLOW, o.slow_download_rate),
        ),
    )


def retry_after(registry: Registry) -> dict[str, str]:
    """The ``Retry-After`` header of an injected 429 (whole seconds, as HTTP wants)."""
    return {"Retry-After": str(max(0, round(registry.options.retry_after_s)))}


def malformed_json() -> Response:
    return Response(MALFORMED_JSON, media_type="application/json")


async def unanswered(fault: Fault, body: dict[str, Any], registry: Registry) -> Response:
    """The answer to an accepted submit, lost: after ``stall_s`` (the client has given up by
    then), or cut off halfway with the connection closed."""
    content = json.dumps(body).encode()
    if fault is Fault.SUBMIT_STALL:
        await asyncio.sleep(registry.options.stall_s)
        return JSONResponse(body)
    return CutShort([content], total=len(content), cut_at=len(content) // 2)


async def throttled(chunks: Iterator[bytes], bytes_per_s: int) -> AsyncIterator[bytes]:
    """``chunks`` at about ``bytes_per_s``, without blocking the event loop."""
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(len(chunk) / bytes_per_s)


class CutShort(Response):
    """A 200 that promises ``total`` bytes, sends the first ``cut_at``, then ends the response
    unfinished: the server closes the connection, as a crashed upstream would."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        total: int,
        cut_at: int,
        media_type: str = "application/json",
    ) -> None:
        super().__init__(status_code=200, media_type=media_type)
        self.chunks = chunks
        self.total = total
        self.cut_at = min(cut_at, total - 1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-length", str(self.total).encode()),
            (b"content-type", (self.media_type or "application/octet-stream").encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        for chunk in self.chunks:
            piece = chunk[: self.cut_at - sent]
            if piece:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
            if sent >= self.cut_at:
                break
        # Returning without the final body message makes the server drop the connection.
