"""Notifying: POST the finished job's record to the producer's callback_url (Standard
Webhooks signature), retried with backoff within 24 hours of the job's end."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Final

import httpx

from workers.deps import Deps
from workers.domain.errors import (
    PermanentError,
    RetryableError,
    VidqueueError,
)
from workers.domain.jobs import TERMINAL, State, now_iso, parse_iso
from workers.domain.messages import Step
from workers.io import webhooks
from workers.redis.store import record_from

log = logging.getLogger("vidqueue.notify")

NOTIFY_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)
# Webhook retries: quick at first (a receiver restarting), then hours apart, within
# NOTIFY_WINDOW_S of the job's end. Like every wait, each is the job's next step in Redis, which a
# due poller publishes when due (workers.steps.due), however long it is.
NOTIFY_BACKOFF_S: Final = (1, 5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
NOTIFY_WINDOW_S: Final = 24 * 3600
NOTIFY_JITTER: Final = 0.1
MAX_NOTIFY_ATTEMPTS: Final = len(NOTIFY_BACKOFF_S) + 1


def notify(job_id: str, d: Deps) -> list[Step]:
    """POST the finished job's record to its callback_url, signed; retry with backoff."""
    claim = d.store.claim(job_id, TERMINAL, lease_s=60)
    fields = claim.fields
    if not claim.ok or fields.get("notify") != "pending":
        return []
    state = State(claim.state)
    record = record_from(fields)
    url = str(record.spec["callback_url"])
    body = json.dumps(
        {"type": f"job.{state}", "timestamp": now_iso(), "data": record.model_dump(mode="json")}
    ).encode()
    try:
        webhooks.check_public_url(url, allow_private=d.settings.allow_private_callbacks)
        sent = webhooks.headers(
            d.settings.webhook_secret, f"{job_id}.{state}", int(time.time()), body
        )
        answer = d.http.post(url, content=body, headers=sent, timeout=NOTIFY_TIMEOUT)
        if answer.status_code >= 300:
            raise RetryableError(f"webhook answered HTTP {answer.status_code}")
    except (httpx.HTTPError, VidqueueError) as exc:
        return _notify_later(job_id, state, fields, exc, d)
    d.store.transition(
        job_id,
        (state,),
        None,
        clear_step=True,
        fields={"notify": "delivered"},
        event="webhook delivered",
    )
    return []


def notify_delay(attempts: int, *, completed_at: str, now: float | None = None) -> float | None:
    """Seconds until the next webhook attempt after ``attempts`` failed ones, or None when
    the schedule or the 24-hour window (from the job's end) is used up."""
    if attempts >= MAX_NOTIFY_ATTEMPTS:
        return None
    delay = NOTIFY_BACKOFF_S[attempts - 1] * random.uniform(1 - NOTIFY_JITTER, 1 + NOTIFY_JITTER)
    left = parse_iso(completed_at).timestamp() + NOTIFY_WINDOW_S - (now or time.time())
    if left < 1:
        return None
    return min(delay, left)


def _notify_later(
    job_id: str, state: State, fields: dict[str, str], exc: Exception, d: Deps
) -> list[Step]:
    attempts = int(fields.get("notify_attempts", "0")) + 1
    why = exc.message if isinstance(exc, VidqueueError) else type(exc).__name__
    delay = None
    if not isinstance(exc, PermanentError):
        delay = notify_delay(attempts, completed_at=fields.get("completed_at") or now_iso())
    if delay is None:
        d.store.transition(
            job_id,
            (state,),
            None,
            clear_step=True,
            incr="notify_attempts",
            fields={"notify": "failed"},
            event=f"webhook abandoned after attempt {attempts}: {why}",
        )
        log.warning("job %s: webhook abandoned after %d attempts: %s", job_id, attempts, why)
        return []
    d.store.transition(
        job_id,
        (state,),
        None,
        step_s=delay,
        incr="notify_attempts",
        event=f"webhook attempt {attempts} failed: {why}; next in {delay:.0f}s",
    )
    return [Step("notify", job_id, delay)]
