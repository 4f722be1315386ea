"""The two paths a job command can take, behind one interface (``Jobs``): the HTTP API
(``producer.cli_http.HttpJobs``, the default) or Redis and S3 directly (``DirectJobs``, with
``--direct``, for in-cluster Python that has the workers' settings and S3 credentials).

The commands (``producer.cli_jobs``, ``producer.cli_batch``) see only ``Jobs``, so both paths
print the same records and JSON, and fail with the same errors.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, Protocol

from producer.cli_conn import resolve
from producer.cli_errors import BadArgument
from producer.client import Client, JobPage
from workers.domain.jobs import JobRecord
from workers.io.storage import storage_errors

DEFAULT_PRODUCER = "cli"


class Jobs(Protocol):
    def check(self, spec: Mapping[str, Any]) -> None: ...

    def enqueue(self, spec: Mapping[str, Any]) -> JobRecord: ...

    def enqueue_many(
        self, specs: Sequence[Mapping[str, Any]], idempotency_key: str | None
    ) -> builtins.list[JobRecord]: ...

    def upload_image(self, path: Path) -> str: ...

    def read(self, job_id: str) -> JobRecord: ...

    def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        timeout_s: float,
        interval_s: float,
        on_change: Callable[[JobRecord], None] | None,
    ) -> builtins.list[JobRecord]: ...

    def cancel(self, job_id: str) -> JobRecord: ...

    def list(
        self,
        *,
        state: str | None,
        provider: str | None,
        labels: Mapping[str, str],
        limit: int,
        cursor: str | None,
        archived_on: date | None,
    ) -> JobPage: ...

    def open_file(
        self, record: JobRecord, what: Literal["video", "cover"]
    ) -> AbstractContextManager[Iterator[bytes]]: ...

    def close(self) -> None: ...


class DirectJobs:
    """The job operations on Redis and S3 through ``producer.client.Client``."""

    def __init__(self, producer: str, everyone: bool = False) -> None:
        self.client = Client(producer=producer)
        self.producer = producer
        self.everyone = everyone

    def close(self) -> None:
        return None

    def check(self, spec: Mapping[str, Any]) -> None:
        self.client.validate(spec, producer=self.producer)

    def enqueue(self, spec: Mapping[str, Any]) -> JobRecord:
        return self.client.enqueue(spec, producer=self.producer)

    def enqueue_many(
        self, specs: Sequence[Mapping[str, Any]], idempotency_key: str | None
    ) -> builtins.list[JobRecord]:
        return self.client.enqueue_many(
            specs, producer=self.producer, idempotency_key=idempotency_key
        )

    def upload_image(self, path: Path) -> str:
        return self.client.upload_file(path, producer=self.producer).ref

    def read(self, job_id: str) -> JobRecord:
        return self.client.read(job_id)

    def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        timeout_s: float,
        interval_s: float,
        on_change: Callable[[JobRecord], None] | None,
    ) -> builtins.list[JobRecord]:
        return self.client.wait_many(
            job_ids, timeout_s=timeout_s, interval_s=interval_s, on_change=on_change
        )

    def cancel(self, job_id: str) -> JobRecord:
        return self.client.cancel(job_id)

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
        return self.client.list(
            state=state,
            provider=provider,
            labels=labels,
            limit=limit,
            cursor=cursor,
            producer=self.producer,
            everyone=self.everyone,
            archived_on=archived_on,
        )

    @contextmanager
    def open_file(
        self, record: JobRecord, what: Literal["video", "cover"]
    ) -> Iterator[Iterator[bytes]]:
        item = (record.result or {})[what]
        with storage_errors("download"):
            body = self.client.storage.client.get_object(Bucket=item["bucket"], Key=item["key"])
        yield body["Body"].iter_chunks(1024 * 1024)


@dataclass(frozen=True)
class Target:
    """Where a job command goes, from its flags: the API (``api_url``, ``token``) or, with
    ``direct``, Redis and S3 as ``producer``."""

    api_url: str | None = None
    token: str | None = None
    direct: bool = False
    producer: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"Target(api_url={self.api_url!r}, direct={self.direct}, producer={self.producer!r})"

    @contextmanager
    def open(self, *, everyone: bool = False) -> Iterator[Jobs]:
        jobs = self._make(everyone)
        try:
            yield jobs
        finally:
            jobs.close()

    def _make(self, everyone: bool) -> Jobs:
        if self.direct:
            return DirectJobs(self.producer or DEFAULT_PRODUCER, everyone)
        if self.producer is not None:
            raise BadArgument(
                "--producer needs --direct: over the HTTP API the token names the producer"
            )
        if everyone:
            raise BadArgument(
                "--all needs --direct: over the HTTP API you list the jobs of your token"
            )
        from producer.cli_http import HttpJobs

        return HttpJobs(resolve(self.api_url, self.token))
