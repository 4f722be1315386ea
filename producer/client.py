"""The Python producer client: enqueue jobs, read and list them, wait for them, cancel them.

It talks to Redis and S3 directly (the same store the workers use), so it needs the workers'
``VIDQUEUE_*`` settings but no Celery knowledge from its caller::

    from producer.client import Client
    client = Client(producer="billing")
    job = client.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a cat"})
    done = client.wait(job.id, timeout_s=600)
    print(done.state, done.result["video"]["url"])

Backends without access to Redis use the HTTP API instead (``producer.aio.AsyncClient`` is an
asyncio client for it). Every method raises the same few errors: ``InvalidSpec`` (naming the
field), ``IdempotencyConflict``, ``JobNotFound`` for an unknown job (a ``KeyError``, as
documented), ``CancelRefused``. Redis itself is reached only through ``workers.redis``: this
module names no key.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from config import providers as provider_config
from config.providers import Catalogue
from config.settings import Settings, get_settings
from producer import batch, files, history, validation, waiting
from producer.batch import MAX_BATCH
from producer.validation import parse_spec
from workers.deps import Deps, build
from workers.domain import messages
from workers.domain.errors import (
    CancelRefused,
    IdempotencyConflict,
    InvalidSpec,
    JobNotFound,
    UploadTooLarge,
)
from workers.domain.jobs import JobRecord, JobSpec, State
from workers.io import archive, uploads
from workers.io.storage import Storage
from workers.redis import enqueue, listing, records
from workers.steps import cancelling, endings

JobPage = listing.JobPage
# The code of a cancel refused because the job finished and left Redis for the archive.
JOB_ARCHIVED = "job_archived"

__all__ = [
    "MAX_BATCH",
    "CancelRefused",
    "Client",
    "IdempotencyConflict",
    "InvalidSpec",
    "JobNotFound",
    "JobPage",
    "JobRecord",
    "UploadTooLarge",
    "parse_spec",
]


class Client:
    """A producer's handle on vidqueue. Safe to share between threads.

    ``producer`` is the identity jobs are created under (and listed by): the HTTP API uses one
    per bearer token. ``get`` and ``cancel`` are unscoped unless given ``producer=``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        catalogue: Catalogue | None = None,
        *,
        producer: str = "",
    ) -> None:
        self.settings = settings or get_settings()
        self.producer = producer
        self._catalogue = catalogue

    @cached_property
    def catalogue(self) -> Catalogue:
        return self._catalogue or provider_config.load(self.settings.providers_file)

    @cached_property
    def deps(self) -> Deps:
        return build(self.settings, self.catalogue)

    @cached_property
    def s3(self) -> files.RequestS3:
        """S3 as requests reach it: short timeouts, its own few threads (``producer.files``)."""
        return files.RequestS3(self.settings)

    @property
    def storage(self) -> Storage:
        return self.s3.storage

    @cached_property
    def stored(self) -> records.JobRecords:
        """The job records in Redis, as a producer reads (and purges) them."""
        return records.JobRecords(self.deps.redis)

    @cached_property
    def history(self) -> history.History:
        """Jobs that left Redis after the hot window, read from the S3 archive."""
        return history.History(self.s3, self.settings)

    @cached_property
    def _creator(self) -> enqueue.Creator:
        store = self.deps.store
        return enqueue.Creator(
            self.deps.redis, store.replication, changes_maxlen=store.changes_maxlen
        )

    @cached_property
    def celery(self) -> Any:
        """The Celery app used to publish steps (by name), on this client's Redis."""
        from config import celery

        if celery.app.conf.broker_url == self.settings.redis_url:
            return celery.app
        return celery.make_app(self.settings)

    @cached_property
    def _validator(self) -> validation.Validator:
        return validation.Validator(self.catalogue, self.settings, self.s3.check_owned)

    def validate_config(self) -> None:
        """Load the providers file now (it is otherwise read on first use)."""
        self.catalogue.check_callbacks(self.settings.public_base_url, self.settings.callback_secret)

    def ping(self) -> None:
        """Raise unless the job store answers (the API's health check)."""
        self.stored.ping()

    # -- enqueueing ------------------------------------------------------------------------

    def validate(
        self, data: Mapping[str, Any] | JobSpec, *, producer: str | None = None
    ) -> JobSpec:
        """Everything checked before a job is accepted: shape, provider, model rules, callback
        URL, uploads (``producer.validation``)."""
        return self._validator.check(data, self._who(producer))

    def enqueue(
        self, data: Mapping[str, Any] | JobSpec, *, producer: str | None = None
    ) -> JobRecord:
        """Accept a job: store it as queued, then fill any free provider slot at once.

        With an ``idempotency_key`` already used, the job it made is returned when the spec is
        the same, and ``IdempotencyConflict`` is raised when it is not.
        """
        [record] = self.accept([data], producer=producer, one=True).records()
        return record

    def enqueue_many(
        self,
        specs: Sequence[Mapping[str, Any] | JobSpec],
        *,
        producer: str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[JobRecord]:
        """Accept up to ``MAX_BATCH`` jobs at once, or none: every spec is validated first (an
        ``InvalidSpec`` names ``jobs.{index}.{field}``), then all are created by one Redis
        script, then each provider is dispatched once. ``idempotency_key`` makes the whole
        batch safe to retry (job *i* gets the key ``{idempotency_key}:{i}``)."""
        accepted = self.accept(specs, producer=producer, idempotency_key=idempotency_key)
        return accepted.records()

    def accept(
        self,
        specs: Sequence[Mapping[str, Any] | JobSpec],
        *,
        producer: str | None = None,
        idempotency_key: str | None = None,
        one: bool = False,
        dispatch: bool = True,
        fair: Callable[[JobSpec], str] | None = None,
    ) -> batch.Accepted:
        """``enqueue`` (``one``: errors name the spec's own fields) or ``enqueue_many``, with
        the records still to render (the API writes their JSON from what was stored). Without
        ``dispatch`` the caller fills free slots itself, e.g. after answering. ``fair``: each
        job's fair-share key (the API's, from the token; see ``batch.new_jobs``)."""
        who = self._who(producer)
        check = partial(self.validate, producer=who)
        valid = [check(specs[0])] if one else batch.validate_all(specs, check, idempotency_key)
        jobs = batch.new_jobs(valid, who, fair, one=one)
        batch.check_keys(valid, [job.fingerprint for job in jobs])
        created = self._creator.create(jobs, producer=who)
        assert created is not None
        if created.conflict is not None:
            raise batch.conflict(created.conflict, one=one)
        existing = self.stored.existing(created.existing)
        accepted = batch.Accepted(
            jobs, created, {i: self.s3.presigned(r) for i, r in existing.items()}
        )
        if dispatch:
            self.dispatch(accepted.providers)
        return accepted

    def dispatch(self, providers: Iterable[str]) -> None:
        """Fill the free slots of each provider with its waiting jobs."""
        for provider in providers:
            messages.send(self.celery, endings.dispatch(provider, self.deps))

    def upload(self, data: bytes, *, producer: str | None = None) -> uploads.Upload:
        """Store an image (PNG or JPEG, ≤ 5 MB); its ``ref`` is usable as a spec's ``image``."""
        return self.s3.upload(data, self._who(producer))

    def upload_file(self, path: str | Path, *, producer: str | None = None) -> uploads.Upload:
        return self.upload(Path(path).read_bytes(), producer=producer)

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: str, *, producer: str | None = None) -> JobRecord | None:
        """The job's record, with fresh presigned URLs for its mirrored files; None when the
        job is unknown (or, with ``producer``, not that producer's). A job past the hot window
        is read from the archive (``producer.history``)."""
        record = self.stored.find(job_id, producer)
        if record is None:
            archived = self.history.find(job_id, producer)
            record = archived.record if archived else None
        return self.s3.presigned(record) if record else None

    def read(self, job_id: str, *, producer: str | None = None) -> JobRecord:
        """``get``, but an unknown job (or another producer's) raises ``JobNotFound``."""
        record = self.get(job_id, producer=producer)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list(
        self,
        *,
        state: State | str | None = None,
        provider: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        producer: str | None = None,
        everyone: bool = False,
        archived_on: date | None = None,
    ) -> JobPage:
        """The producer's jobs, newest first, filtered; pass ``next_cursor`` on for the next
        page (a page may be short while more remain: stop when ``next_cursor`` is None).
        ``everyone`` lists every producer's jobs (an operator's view). ``archived_on`` lists
        the jobs created that UTC day that left Redis for the archive, oldest first."""
        if archived_on is not None:
            match = history.Match(State(state) if state else None, provider, dict(labels or {}))
            whose = None if everyone else self._who(producer)
            return self.history.page(archived_on, whose, limit=limit, cursor=cursor, match=match)
        filters = listing.Filters(State(state) if state else None, provider, dict(labels or {}))
        after = listing.Position.decode(cursor) if cursor else None
        whose = None if everyone else self._who(producer)
        found = self.stored.page(whose, limit=limit, after=after, filters=filters)
        following = found.next.encode() if found.next else None
        return JobPage(jobs=[self.s3.presigned(r) for r in found.records], next_cursor=following)

    def events(self, job_id: str, *, producer: str | None = None) -> builtins.list[dict[str, Any]]:
        """The job's timeline: ``{"at", "state", "event"}`` entries, oldest first."""
        archived = self._archived(job_id, producer)
        return archived.events if archived else self.deps.store.events(job_id)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 3600.0,
        interval_s: float = 0.5,
        on_change: Callable[[JobRecord], None] | None = None,
    ) -> JobRecord:
        """Block until the job is terminal (or ``TimeoutError``); ``on_change`` sees each update."""
        [record] = self.wait_many(
            [job_id], timeout_s=timeout_s, interval_s=interval_s, on_change=on_change
        )
        return record

    def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        timeout_s: float = 3600.0,
        interval_s: float = 0.5,
        on_change: Callable[[JobRecord], None] | None = None,
    ) -> builtins.list[JobRecord]:
        """Block until every job is terminal; the records come back in the order asked.
        Each round reads the unfinished jobs in one Redis round trip."""
        done = waiting.wait_for(
            self._many,
            job_ids,
            timeout_s=timeout_s,
            interval_s=interval_s,
            on_change=on_change,
        )
        return [self.s3.presigned(record) for record in done]

    def _many(self, job_ids: builtins.list[str]) -> builtins.list[JobRecord | None]:
        """The records of ``job_ids`` from Redis, and from the archive for those gone."""
        found = self.stored.many(job_ids)
        for i, record in enumerate(found):
            if record is None and (archived := self.history.find(job_ids[i])) is not None:
                found[i] = archived.record
        return found

    # -- changing --------------------------------------------------------------------------

    def cancel(self, job_id: str, *, producer: str | None = None) -> JobRecord:
        """Cancel a job; raises ``JobNotFound`` (a ``KeyError``) for an unknown id and
        ``CancelRefused`` when it is mirroring or finished. A job the provider still works on
        stays counted (and polled) until the provider lets go, unless the provider can cancel
        it. An archived job is finished: ``CancelRefused`` with the code ``job_archived``."""
        archived = self._archived(job_id, producer)
        if archived is not None:
            state = archived.record.state
            message = f"job {job_id} is {state} and archived: a finished job cannot be cancelled"
            raise CancelRefused(message, code=JOB_ARCHIVED)
        messages.send(self.celery, cancelling.cancel(job_id, self.deps))
        return self.read(job_id)

    def purge(self, job_id: str, *, producer: str | None = None) -> None:
        """Delete a finished job: its mirrored files, then its record and timeline (so a purge
        that fails half-way can be retried). ``CancelRefused`` while it is not finished or
        still settling (at the provider, webhook pending). An archived job's files and archived
        record are deleted."""
        try:
            finished = self.stored.finished(job_id, producer)
        except JobNotFound:
            archived = self.history.find(job_id, producer)
            if archived is None:
                raise
            self.history.purge(archived)
            return
        self.s3.delete(finished.files)
        self.stored.purge(finished)
        self.history.forget(job_id)

    def _archived(self, job_id: str, producer: str | None) -> archive.Archived | None:
        """None while the job is in Redis (the caller's), else its archived copy; raises
        ``JobNotFound`` when neither holds it."""
        try:
            self.stored.check(job_id, producer)
        except JobNotFound:
            archived = self.history.find(job_id, producer)
            if archived is None:
                raise
            return archived
        return None

    def _who(self, producer: str | None) -> str:
        return self.producer if producer is None else producer
