"""``POST /v1/callbacks/{provider}/{job_id}/{token}``: providers tell us a task changed.

A callback is a hint, never the truth (docs/callbacks.md). A valid one makes vidqueue poll the
job now through the normal poll step, if the job waits on its safety schedule; the job's state
comes from that poll, never from the callback's body. Duplicates, replays, callbacks out of
order or for finished and unknown jobs change nothing but a counter (``/metrics``:
``vidqueue_callbacks_total``).

The route takes no bearer token: the per-job token in the URL (an HMAC of the provider and job
id under ``VIDQUEUE_CALLBACK_SECRET``) is checked in constant time. It answers at once (a
provider retries a slow or failed delivery), and each API process admits at most
``RATE_PER_S`` callbacks a second (burst ``BURST``): a flood is refused with 429 before it
costs a Redis call, so it cannot starve the routes producers use.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from producer.web import client
from workers.domain import callbacks, messages

router = APIRouter(tags=["callbacks"])

RATE_PER_S: Final = 500.0
BURST: Final = 1000.0
MAX_BODY: Final = 64 * 1024


class TokenBucket:
    """A process-local token bucket. Kept by hand: it is ten lines, must cost no Redis call
    (it guards the route against floods), and serves one route of one process."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.at = burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


bucket = TokenBucket(RATE_PER_S, BURST)


class CallbackAnswer(BaseModel):
    """What the route answers (``_answer``): documentation only."""

    received: bool
    outcome: str


_ANSWERS: Final[dict[int | str, dict[str, object]]] = {
    200: {"model": CallbackAnswer, "description": "Received (outcome: what it changed)"},
    404: {"model": CallbackAnswer, "description": "Unknown provider or a forged token"},
    429: {"model": CallbackAnswer, "description": "Too many callbacks; Retry-After: 1"},
}


@router.post(
    callbacks.ROUTE + "/{provider}/{job_id}/{token}",
    summary="A provider's status callback (no bearer token: the URL's token authenticates it)",
    responses=_ANSWERS,
)
async def provider_callback(
    provider: str, job_id: str, token: str, request: Request
) -> JSONResponse:
    if not bucket.take():
        return _answer(429, "rate_limited", headers={"Retry-After": "1"})
    body = (await request.body())[:MAX_BODY]
    outcome = await run_in_threadpool(receive, provider, job_id, token, body)
    if outcome == "forged":
        return _answer(404, "not_found")
    return _answer(200, outcome)


def receive(provider: str, job_id: str, token: str, body: bytes) -> str:
    """Check the token, then poll the job now when it waits (``Store.hasten``)."""
    c = client()
    settings = c.settings
    if provider not in c.catalogue.providers:
        return "forged"
    if not callbacks.token_ok(settings.callback_secret, provider, job_id, token):
        c.deps.store.count_callback(provider, "forged")
        return "forged"
    config = c.catalogue.get(provider)
    working = callbacks.hint(body) == "working"
    outcome = c.deps.store.hasten(
        job_id, provider, min_gap_s=config.min_poll_interval_s, working=working
    )
    if outcome == "hastened":
        messages.send(c.celery, [messages.Step("poll", job_id)])
    return outcome


def _answer(status: int, outcome: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"received": status == 200, "outcome": outcome}, status, headers)
