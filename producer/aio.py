"""An asyncio client for vidqueue's HTTP API.

It speaks HTTP (``httpx.AsyncClient``) with a bearer token, so an asyncio backend needs no
Redis or S3 access and no vidqueue settings — only the API's URL and its token. It has the
sync client's methods and raises its errors::

    from producer.aio import AsyncClient

    async with AsyncClient("http://vidqueue:8000", token="...") as vq:
        job = await vq.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a cat"})
        done = await vq.wait(job.id, timeout_s=600)
        async for event in vq.stream(job.id):  # live, until the job ends
            print(event["state"])

Errors: ``InvalidSpec`` (400/413/422, naming the field), ``IdempotencyConflict`` (409),
``CancelRefused`` (409), ``JobNotFound`` (404; a ``KeyError``, as documented), ``ApiError`` for
anything else (401, 503 ...).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import BaseModel

from workers.domain.errors import (
    CancelRefused,
    IdempotencyConflict,
    InvalidSpec,
    JobNotFound,
    VidqueueError,
)
from workers.domain.jobs import TERMINAL, JobRecord, JobSpec, State
from workers.redis import listing

JobPage = listing.JobPage

__all__ = ["ApiError", "AsyncClient", "JobPage", "JobRecord", "Uploaded"]

# Jobs polled at once by ``wait_many`` (each poll is one GET).
WAIT_CONCURRENCY: Final = 16
# ``stream``: a connection that has sent nothing (not even the server's 10 s ping) this long is
# taken for dead and made again; reconnects wait from the first delay, doubling up to the last.
STREAM_READ_TIMEOUT_S: Final = 45.0
RECONNECT_DELAYS_S: Final = (0.5, 30.0)
# Answers a stream is opened again after (with the same backoff), not raised: the API or its
# Redis is away for now.
RETRIED_STATUSES: Final = frozenset({502, 503, 504})


class _Unavailable(Exception):
    """A stream refused with one of ``RETRIED_STATUSES``."""


class ApiError(VidqueueError):
    """An answer the client has no better error for (401, 503, ...)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}", code=code)
        self.status, self.field = status, field


class Uploaded(BaseModel):
    """A stored upload; ``image`` goes into a job spec."""

    id: str
    image: str
    content_type: str
    size: int
    sha256: str


class AsyncClient:
    """A producer's asyncio handle on the HTTP API; one per event loop, closed with
    ``aclose()`` or ``async with``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            transport=transport or httpx.AsyncHTTPTransport(retries=2),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- enqueueing ------------------------------------------------------------------------

    async def enqueue(
        self, spec: Mapping[str, Any] | JobSpec, *, idempotency_key: str | None = None
    ) -> JobRecord:
        answer = await self._http.post(
            "/v1/jobs", json=_spec_json(spec), headers=_idem(idempotency_key)
        )
        return JobRecord.model_validate(_ok(answer))

    async def enqueue_many(
        self,
        specs: Sequence[Mapping[str, Any] | JobSpec],
        *,
        idempotency_key: str | None = None,
    ) -> builtins.list[JobRecord]:
        """Up to 1,000 jobs, all or none (see ``POST /v1/jobs/batch``)."""
        body = {"jobs": [_spec_json(spec) for spec in specs]}
        answer = await self._http.post("/v1/jobs/batch", json=body, headers=_idem(idempotency_key))
        return [JobRecord.model_validate(job) for job in _ok(answer)["jobs"]]

    async def upload(
        self, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> Uploaded:
        """Store an image (PNG or JPEG by content, ≤ 5 MB) for use as a spec's ``image``."""
        answer = await self._http.post(
            "/v1/uploads", content=data, headers={"content-type": content_type}
        )
        return Uploaded.model_validate(_ok(answer))

    # -- reading ---------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        answer = await self._http.get(f"/v1/jobs/{job_id}")
        if answer.status_code == 404:
            return None
        return JobRecord.model_validate(_ok(answer))

    async def list(
        self,
        *,
        state: State | str | None = None,
        provider: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        archived_on: str | None = None,
    ) -> JobPage:
        """Your jobs, newest first; pass ``next_cursor`` on until it is None. ``archived_on``
        (``YYYY-MM-DD``) pages through that UTC day's jobs in the S3 archive instead."""
        params: builtins.list[tuple[str, str | int | float | bool | None]] = [("limit", limit)]
        params += [
            (name, value)
            for name, value in (
                ("state", state),
                ("provider", provider),
                ("cursor", cursor),
                ("archived_on", archived_on),
            )
            if value
        ]
        params += [("label", f"{key}:{value}") for key, value in (labels or {}).items()]
        answer = await self._http.get("/v1/jobs", params=params)
        return JobPage.model_validate(_ok(answer))

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        answer = await self._http.get(f"/v1/jobs/{job_id}/events")
        events: builtins.list[dict[str, Any]] = _ok(answer, job_id)["events"]
        return events

    async def stream(
        self, job_id: str | None = None, *, last_event_id: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Live state changes as they happen (Server-Sent Events, read with ``httpx-sse``):
        one job's (``GET /v1/jobs/{id}/events?stream=true``: its current state first, and the
        iterator ends after a terminal state), or every job of this token's
        (``GET /v1/events/stream``: it never ends). Each item is the event's data —
        ``{"id", "state", "at", "provider", "model"}`` — plus ``"event_id"``. A dropped
        connection, or a 502/503/504, is made again with ``Last-Event-ID`` (backing off from
        0.5 s to 30 s), so nothing is missed or repeated;
        pass ``last_event_id`` to resume after an event seen earlier. ``JobNotFound`` for an
        unknown job, ``ApiError`` for other refusals (401, 400 ...)::

            async for event in vq.stream(job.id):
                print(event["state"])
        """
        path = f"/v1/jobs/{job_id}/events" if job_id else "/v1/events/stream"
        params = {"stream": "true"} if job_id else {}
        timeout = httpx.Timeout(30.0, connect=5.0, read=STREAM_READ_TIMEOUT_S)
        delay = RECONNECT_DELAYS_S[0]
        while True:
            headers = {"last-event-id": last_event_id} if last_event_id else {}
            try:
                async with aconnect_sse(
                    self._http, "GET", path, params=params, headers=headers, timeout=timeout
                ) as source:
                    if source.response.status_code in RETRIED_STATUSES:
                        raise _Unavailable  # Redis or the API away for now: made again below
                    if not source.response.is_success:
                        await source.response.aread()
                        _ok(source.response, job_id)
                    async with contextlib.aclosing(source.aiter_sse()) as events:
                        async for sse in events:
                            delay = RECONNECT_DELAYS_S[0]
                            if sse.event != "state" or not sse.data:
                                continue
                            item: dict[str, Any] = {**json.loads(sse.data), "event_id": sse.id}
                            last_event_id = sse.id or last_event_id
                            yield item
                            if job_id and item.get("state") in TERMINAL:
                                return
            except (httpx.TransportError, SSEError, _Unavailable):
                pass  # dropped, refused, cut short or unavailable: made again below
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAYS_S[1])

    async def wait(
        self, job_id: str, *, timeout_s: float = 3600.0, interval_s: float = 1.0
    ) -> JobRecord:
        """Until the job is terminal (``TimeoutError`` after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self.get(job_id)
            if record is None:
                raise JobNotFound(job_id)
            if record.state in TERMINAL:
                return record
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {record.state} after {timeout_s:.0f}s")
            await asyncio.sleep(interval_s)

    async def wait_many(
        self, job_ids: Sequence[str], *, timeout_s: float = 3600.0, interval_s: float = 1.0
    ) -> builtins.list[JobRecord]:
        """Until every job is terminal; records in the order asked."""
        gate = asyncio.Semaphore(WAIT_CONCURRENCY)

        async def one(job_id: str) -> JobRecord:
            deadline = time.monotonic() + timeout_s
            while True:
                async with gate:
                    record = await self.get(job_id)
                if record is None:
                    raise JobNotFound(job_id)
                if record.state in TERMINAL:
                    return record
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id} still {record.state} after {timeout_s:.0f}s")
                await asyncio.sleep(interval_s)

        return builtins.list(await asyncio.gather(*(one(job_id) for job_id in job_ids)))

    # -- changing --------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel; ``CancelRefused`` once mirroring or finished, ``JobNotFound`` when unknown."""
        answer = await self._http.delete(f"/v1/jobs/{job_id}")
        return JobRecord.model_validate(_ok(answer, job_id))


def _spec_json(spec: Mapping[str, Any] | JobSpec) -> dict[str, Any]:
    if isinstance(spec, JobSpec):
        return spec.model_dump(mode="json", exclude_none=True)
    return dict(spec)


def _idem(key: str | None) -> dict[str, str]:
    return {"idempotency-key": key} if key else {}


def _ok(answer: httpx.Response, job_id: str | None = None) -> Any:
    """The JSON body of a 2xx answer; anything else raised as the sync client would."""
    if answer.is_success:
        return answer.json()
    try:
        error = answer.json()["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "http_error", answer.text[:200], None
    status = answer.status_code
    if status == 404 and job_id is not None:
        raise JobNotFound(job_id)
    if status in (400, 413, 422) and field:
        raise InvalidSpec(field, message.removeprefix(f"{field}: "))
    if status == 409 and code == "idempotency_conflict":
        raise IdempotencyConflict(message, field=field or "idempotency_key")
    if status == 409 and code == "cannot_cancel":
        raise CancelRefused(message)
    raise ApiError(status, code, message, field)
