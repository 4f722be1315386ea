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
field), ``IdempotencyConflict``, ``KeyError`` for an unknown job, ``CancelRefused``.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from config import providers as provider_config
from config.providers import Catalogue
from config.settings import Settings, get_settings
from producer import batch
from producer.batch import MAX_BATCH, fingerprint, parse_spec
from workers.deps import Deps, build
from workers.domain import messages
from workers.domain.errors import CancelRefused, IdempotencyConflict, InvalidSpec, PermanentError
from workers.domain.jobs import TERMINAL, JobRecord, JobSpec, State
from workers.io import uploads, webhooks
from workers.io.storage import Storage, storage_errors
from workers.redis import keys, listing
from workers.redis.enqueue import Creator, NewJob
from workers.redis.listing import Filters, JobPage, Position
from workers.redis.store import record_from
from workers.steps import cancelling, endings

__all__ = [
    "MAX_BATCH",
    "CancelRefused",
    "Client",
    "IdempotencyConflict",
    "InvalidSpec",
    "JobPage",
    "JobRecord",
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
    def storage(self) -> Storage:
        return Storage(self.settings)

    @cached_property
    def _creator(self) -> Creator:
        return Creator(self.deps.redis)

    @cached_property
    def _celery(self) -> Any:
        """The Celery app used to publish steps (by name), on this client's Redis."""
        from config import celery

        if celery.app.conf.broker_url == self.settings.redis_url:
            return celery.app
        return celery.make_app(self.settings)

    def validate_config(self) -> None:
        """Load the providers file now (it is otherwise read on first use)."""
        self.catalogue.get(next(iter(self.catalogue.providers)))

    # -- enqueueing ------------------------------------------------------------------------

    def validate(
        self, data: Mapping[str, Any] | JobSpec, *, producer: str | None = None
    ) -> JobSpec:
        """Everything checked before a job is accepted: shape, provider, model rules, uploads."""
        spec = data if isinstance(data, JobSpec) else parse_spec(data)
        name, check = self._adapters.get(spec.provider)
        batch.adapter_checks(name, check, spec)
        if spec.callback_url:
            try:
                webhooks.check_public_url(
                    spec.callback_url, allow_private=self.settings.allow_private_callbacks
                )
            except PermanentError as exc:
                raise InvalidSpec("callback_url", exc.message) from None
        if any(uploads.is_ref(image) for image in spec.images):
            uploads.check_owned(self.storage, spec, self._who(producer))
        return spec

    @cached_property
    def _adapters(self) -> batch.Adapters:
        return batch.Adapters(self.catalogue)

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
    ) -> batch.Accepted:
        """``enqueue`` (``one``: errors name the spec's own fields) or ``enqueue_many``, with
        the records still to render: the API writes the new ones' JSON from what was stored.
        Without ``dispatch`` the caller fills the providers' free slots (``dispatch``) itself,
        e.g. after answering."""
        who = self._who(producer)
        if one:
            valid = [self.validate(specs[0], producer=who)]
        else:
            check = partial(self.validate, producer=who)
            valid = batch.validate_all(specs, check, idempotency_key)
        jobs = [NewJob.of(batch.new_job_id(), spec, fingerprint(spec, who)) for spec in valid]
        batch.check_keys(valid, [job.fingerprint for job in jobs])
        created = self._creator.create(jobs, producer=who)
        assert created is not None
        if created.conflict is not None:
            raise batch.conflict(created.conflict, one=one)
        accepted = batch.Accepted(jobs, created, self._records(created.existing))
        if dispatch:
            self.dispatch(accepted.providers)
        return accepted

    def dispatch(self, providers: Iterable[str]) -> None:
        """Fill the free slots of each provider with its waiting jobs."""
        for provider in providers:
            messages.send(self._celery, endings.dispatch(provider, self.deps))

    def upload(self, data: bytes, *, producer: str | None = None) -> uploads.Upload:
        """Store an image (PNG or JPEG, ≤ 5 MB); its ``ref`` is usable as a spec's ``image``."""
        return uploads.save(self.storage, data, producer=self._who(producer))

    def upload_file(self, path: str | Path, *, producer: str | None = None) -> uploads.Upload:
        return self.upload(Path(path).read_bytes(), producer=producer)

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: str, *, producer: str | None = None) -> JobRecord | None:
        """The job's record, with fresh presigned URLs for its mirrored files; None when the
        job is unknown (or, with ``producer``, not that producer's)."""
        fields = self.deps.store.fields(job_id)
        if not fields or (producer is not None and fields.get("producer") != producer):
            return None
        return self._presigned(record_from(fields))

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
    ) -> JobPage:
        """The producer's jobs, newest first, filtered; pass ``next_cursor`` on for the next
        page (a page may be short while more remain: stop when ``next_cursor`` is None).
        ``everyone`` lists every producer's jobs (an operator's view)."""
        index = keys.all_jobs() if everyone else keys.by_producer(self._who(producer))
        filters = Filters(State(state) if state else None, provider, dict(labels or {}))
        after = Position.decode(cursor) if cursor else None
        found = listing.scan(self.deps.redis, index, limit=limit, after=after, filters=filters)
        jobs = [self._presigned(record_from(fields)) for fields in found.found]
        return JobPage(jobs=jobs, next_cursor=found.next.encode() if found.next else None)

    def events(self, job_id: str, *, producer: str | None = None) -> builtins.list[dict[str, Any]]:
        """The job's timeline: ``{"at", "state", "event"}`` entries, oldest first."""
        self._owned_fields(job_id, producer)
        return self.deps.store.events(job_id)

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
        deadline = time.monotonic() + timeout_s
        latest: dict[str, JobRecord] = {}
        seen: dict[str, tuple[str, int]] = {}
        pending = list(dict.fromkeys(job_ids))
        while True:
            for job_id, fields in zip(
                pending, listing.records(self.deps.redis, pending), strict=True
            ):
                if fields is None:
                    raise KeyError(job_id)
                record = latest[job_id] = record_from(fields)
                if on_change and seen.get(job_id) != (record.state, record.polls):
                    seen[job_id] = (record.state, record.polls)
                    on_change(record)
            pending = [i for i in pending if latest[i].state not in TERMINAL]
            if not pending:
                return [self._presigned(latest[i]) for i in job_ids]
            if time.monotonic() >= deadline:
                states = sorted({str(latest[i].state) for i in pending})
                raise TimeoutError(
                    f"{len(pending)} job(s) not finished after {timeout_s:.0f}s: {states}"
                )
            time.sleep(interval_s)

    # -- changing --------------------------------------------------------------------------

    def cancel(self, job_id: str, *, producer: str | None = None) -> JobRecord:
        """Cancel a job; raises ``KeyError`` for an unknown id and ``CancelRefused`` when it is
        mirroring or finished. A job the provider still works on stays counted (and polled)
        until the provider lets go, unless the provider can cancel it."""
        self._owned_fields(job_id, producer)
        messages.send(self._celery, cancelling.cancel(job_id, self.deps))
        return self._existing(job_id)

    def purge(self, job_id: str, *, producer: str | None = None) -> None:
        """Delete a finished job: its record, timeline and mirrored files. ``CancelRefused``
        while it is not finished or still settling (at the provider, webhook pending)."""
        fields = self._owned_fields(job_id, producer)
        if (
            fields["state"] not in TERMINAL
            or fields.get("at_provider") == "1"
            or fields.get("notify") == "pending"
        ):
            raise CancelRefused(f"job {job_id} is {fields['state']}: not finished yet")
        for item in json.loads(fields.get("result") or "{}").values():
            with storage_errors("delete object"):
                self.storage.client.delete_object(Bucket=item["bucket"], Key=item["key"])
        spec = json.loads(fields["spec"])
        pipe = self.deps.redis.pipeline(transaction=True)
        pipe.delete(keys.job(job_id), keys.events(job_id))
        pipe.zrem(keys.all_jobs(), job_id)
        pipe.zrem(keys.by_producer(fields.get("producer", "")), job_id)
        pipe.zrem(keys.due(), job_id)
        pipe.srem(keys.by_state(fields["state"]), job_id)
        if spec.get("idempotency_key"):
            pipe.delete(keys.idempotency(spec["idempotency_key"]))
        pipe.execute()

    # -- helpers ---------------------------------------------------------------------------

    def _who(self, producer: str | None) -> str:
        return self.producer if producer is None else producer

    def _owned_fields(self, job_id: str, producer: str | None) -> dict[str, str]:
        fields = self.deps.store.fields(job_id)
        if not fields or (producer is not None and fields.get("producer") != producer):
            raise KeyError(job_id)
        return fields

    def _existing(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def _records(self, ids: Mapping[int, str]) -> dict[int, JobRecord]:
        """The records of ``ids`` (index → job id), read in one round trip."""
        rows = listing.records(self.deps.redis, ids.values()) if ids else []
        found: dict[int, JobRecord] = {}
        for (index, job_id), row in zip(ids.items(), rows, strict=True):
            if row is None:
                raise KeyError(job_id)
            found[index] = self._presigned(record_from(row))
        return found

    def _presigned(self, record: JobRecord) -> JobRecord:
        if not record.result:
            return record
        result = {
            name: {**item, "url": self.storage.presign(item["key"], item["bucket"])}
            for name, item in record.result.items()
        }
        return record.model_copy(update={"result": result})
