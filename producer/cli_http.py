"""The job commands' path through the HTTP API: ``producer.aio.AsyncClient``, driven from
synchronous commands, plus the few calls it has no method for (a job's files).

One ``asyncio.Runner`` (one event loop) lives as long as the command, so the client's
connection pool is reused from call to call. Answers the API refuses become the command
line's own errors (``producer.cli_errors``), so one table decides what is printed and the exit
code. No Redis, no S3 credentials and no vidqueue settings are needed: an image is uploaded
through ``POST /v1/uploads``, and a file is downloaded by following the 302 of
``/v1/jobs/{id}/video`` (or ``/cover``) to its presigned URL, which carries its own signature.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import httpx

from producer import waiting
from producer.aio import WAIT_CONCURRENCY, ApiError, AsyncClient, JobPage
from producer.cli_conn import Connection
from producer.cli_errors import (
    ApiBadInput,
    ApiBadToken,
    ApiForbidden,
    ApiRefused,
    ApiUnavailable,
    ApiUnreachable,
    NotReady,
)
from producer.validation import parse_spec
from workers.domain.errors import InvalidSpec, JobNotFound
from workers.domain.images import sniff
from workers.domain.jobs import JobRecord

T = TypeVar("T")

# File types ``POST /v1/uploads`` takes, by their first bytes (the API checks them again).
_CONTENT_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg"}
CHUNK: Final = 1024 * 1024


class HttpJobs:
    """The job commands' operations over the HTTP API (see ``producer.cli_backend.Jobs``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._runner = asyncio.Runner()
        self._api = AsyncClient(connection.api_url, connection.token)

    def close(self) -> None:
        try:
            self._runner.run(self._api.aclose())
        finally:
            self._runner.close()

    # -- the calls -------------------------------------------------------------------------

    def check(self, spec: Mapping[str, Any]) -> None:
        """The spec's shape, checked here; the API checks the rest (provider, model rules)."""
        parse_spec(spec)

    def enqueue(self, spec: Mapping[str, Any]) -> JobRecord:
        return self._run(self._api.enqueue(spec))

    def enqueue_many(
        self, specs: Sequence[Mapping[str, Any]], idempotency_key: str | None
    ) -> builtins.list[JobRecord]:
        return self._run(self._api.enqueue_many(specs, idempotency_key=idempotency_key))

    def upload_image(self, path: Path) -> str:
        data = path.read_bytes()
        kind = _CONTENT_TYPES.get(sniff(data) or "")
        if kind is None:
            raise InvalidSpec("image", f"{path}: not a PNG or JPEG file")
        try:
            return self._run(self._api.upload(data, content_type=kind)).image
        except InvalidSpec as exc:  # the API names its own field, "file"
            raise InvalidSpec("image", f"{path}: {exc.message}") from None

    def read(self, job_id: str) -> JobRecord:
        record = self._run(self._api.get(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return record

    def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        timeout_s: float,
        interval_s: float,
        on_change: Callable[[JobRecord], None] | None,
    ) -> builtins.list[JobRecord]:
        """The sync client's loop (``producer.waiting``): each round reads the unfinished jobs,
        ``WAIT_CONCURRENCY`` requests at a time."""
        return waiting.wait_for(
            self._many, job_ids, timeout_s=timeout_s, interval_s=interval_s, on_change=on_change
        )

    def cancel(self, job_id: str) -> JobRecord:
        return self._run(self._api.cancel(job_id))

    def list(
        self,
        *,
        state: str | None,
        provider: str | None,
        labels: Mapping[str, str],
        limit: int,
        cursor: str | None,
        archived_on: date | None,
    ) -> JobPage:
        day = archived_on.isoformat() if archived_on else None
        return self._run(
            self._api.list(
                state=state,
                provider=provider,
                labels=labels,
                limit=limit,
                cursor=cursor,
                archived_on=day,
            )
        )

    @contextmanager
    def open_file(
        self, record: JobRecord, what: Literal["video", "cover"]
    ) -> Iterator[Iterator[bytes]]:
        """The file's bytes: the API answers ``/v1/jobs/{id}/{what}`` with a 302 to a fresh
        presigned URL, fetched without the bearer token (it is S3's, not the API's)."""
        url = self.connection.api_url
        headers = (
            {"authorization": f"Bearer {self.connection.token}"} if self.connection.token else {}
        )
        with _transport_errors(url):
            answer = httpx.get(f"{url}/v1/jobs/{record.id}/{what}", headers=headers, timeout=30)
        if answer.status_code != 302 or "location" not in answer.headers:
            raise _refusal(answer, url)
        location = answer.headers["location"]
        with (
            _transport_errors(_origin(location)),
            httpx.stream("GET", location, timeout=60) as body,
        ):
            if body.status_code != 200:
                raise ApiRefused(
                    f"the presigned URL answered {body.status_code}", url=_origin(location)
                )
            yield body.iter_bytes(CHUNK)

    # -- helpers ---------------------------------------------------------------------------

    def _many(self, job_ids: builtins.list[str]) -> builtins.list[JobRecord | None]:
        gate = asyncio.Semaphore(WAIT_CONCURRENCY)

        async def one(job_id: str) -> JobRecord | None:
            async with gate:
                return await self._api.get(job_id)

        async def every() -> builtins.list[JobRecord | None]:
            return builtins.list(await asyncio.gather(*(one(i) for i in job_ids)))

        return self._run(every())

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run one call of the async client; its refusals become the command line's errors."""
        url = self.connection.api_url
        try:
            with _transport_errors(url):
                return self._runner.run(call)
        except ApiError as exc:
            raise _translated(exc, url, bool(self.connection.token)) from exc


@contextmanager
def _transport_errors(shown: str) -> Iterator[None]:
    """No answer from ``shown`` (the API's URL; only the origin of a presigned one, whose
    query string is a signature) becomes ``ApiUnreachable``."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ApiUnreachable(type(exc).__name__, url=shown) from exc
    except httpx.TransportError as exc:
        raise ApiUnreachable(f"{type(exc).__name__}: it stopped answering", url=shown) from exc


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _translated(exc: ApiError, url: str, sent_token: bool) -> Exception:
    """The command line's error for an API refusal ``producer.aio`` raised as ``ApiError``."""
    status, text = exc.status, str(exc)
    if status == 401:
        why = text if sent_token else "no token was sent"
        return ApiBadToken(why, url=url, status=status)
    if status == 403:
        return ApiForbidden(text, url=url, status=status)
    if status in (400, 413, 422):
        named = f"{exc.field}: " if exc.field else ""
        return ApiBadInput(named + text, url=url, status=status)
    if status in (502, 503, 504):
        return ApiUnavailable(text, url=url, status=status)
    return ApiRefused(text, url=url, status=status)


def _refusal(answer: httpx.Response, url: str) -> Exception:
    """The error for a files route's answer other than its 302."""
    try:
        error = answer.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", answer.text[:200]
    if answer.status_code in (404, 409):  # the record was just read: the file is missing
        return NotReady(message)
    failed = ApiError(answer.status_code, code, message)
    return _translated(failed, url, "authorization" in answer.request.headers)
