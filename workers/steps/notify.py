"""Notifying: POST the finished job's record to the producer's callback_url (Standard
Webhooks signature), retried on the schedule of ``retry.WEBHOOK`` within a day of the job's end.
The URL's host is resolved and checked once, and the POST goes to a checked address
(``webhooks.resolve`` and ``webhooks.send``).

The record's mirrored files get a ``url`` presigned when the body is built, as every read
presigns one: Redis keeps no URL (a reused result's webhook carries the original's files,
presigned for this send)."""

from __future__ import annotations

import json
import logging
import time
from typing import Final

import httpx

from workers.deps import Deps
from workers.domain import retry
from workers.domain.change import Change
from workers.domain.errors import PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import TERMINAL, now_iso
from workers.domain.messages import Step
from workers.domain.row import JobRow, Notify
from workers.io import webhooks

log = logging.getLogger("vidqueue.notify")

NOTIFY_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)


def notify(job_id: str, d: Deps) -> list[Step]:
    """POST the finished job's record to its callback_url, signed; retry with backoff."""
    claim = d.store.claim(job_id, TERMINAL, lease_s=60)
    row = claim.row
    if row is None or row.notify != Notify.PENDING:
        return []
    body = json.dumps(
        {
            "type": f"job.{row.state}",
            "timestamp": now_iso(),
            "data": d.storage.presigned(row.record()).model_dump(mode="json"),
        }
    ).encode()
    try:
        _post(row, body, d)
    except (httpx.HTTPError, VidqueueError) as exc:
        return _notify_later(row, exc, d)
    d.store.transition(
        job_id,
        (row.state,),
        None,
        clear_step=True,
        change=Change(notify=Notify.DELIVERED),
        event="webhook delivered",
    )
    return []


def _post(row: JobRow, body: bytes, d: Deps) -> None:
    """Send the signed webhook; anything but a 2xx answer is a failed attempt."""
    url = row.callback_url
    if url is None:  # a pending webhook without a URL: a broken record, nothing to retry
        raise PermanentError(f"job {row.id} has no callback_url")
    # Resolved and checked once; the request goes to a checked address (DNS rebinding).
    target = webhooks.resolve(url, allow_private=d.settings.allow_private_callbacks)
    message_id = f"{row.id}.{row.state}"
    sent = webhooks.headers(d.settings.webhook_secret, message_id, int(time.time()), body)
    answer = webhooks.send(d.http, target, body, sent, NOTIFY_TIMEOUT)
    if answer.status_code >= 300:
        raise RetryableError(f"webhook answered HTTP {answer.status_code}")


def _notify_later(row: JobRow, exc: Exception, d: Deps) -> list[Step]:
    attempts = row.notify_attempts + 1
    why = exc.message if isinstance(exc, VidqueueError) else type(exc).__name__
    delay = None
    if not isinstance(exc, PermanentError):
        delay = retry.WEBHOOK.delay(attempts, completed_at=row.completed_at or now_iso())
    if delay is None:
        d.store.transition(
            row.id,
            (row.state,),
            None,
            clear_step=True,
            incr="notify_attempts",
            change=Change(notify=Notify.FAILED),
            event=f"webhook abandoned after attempt {attempts}: {why}",
        )
        log.warning("job %s: webhook abandoned after %d attempts: %s", row.id, attempts, why)
        return []
    d.store.transition(
        row.id,
        (row.state,),
        None,
        step_s=delay,
        incr="notify_attempts",
        event=f"webhook attempt {attempts} failed: {why}; next in {delay:.0f}s",
    )
    return [Step("notify", row.id, delay)]
