"""The Python producer client: enqueue jobs, read them, wait for them.

It talks to Redis directly (the same store the workers use) and needs no Celery knowledge
from its caller::

    from producer.client import Client
    client = Client()
    job = client.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a cat"})
    done = client.wait(job.id, timeout_s=600)
    print(done.state, done.result["video"]["url"])
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from config import providers as provider_config
from config.providers import Catalogue
from config.settings import Settings, get_settings
from workers import pipeline, steps, webhooks
from workers.deps import Deps, build
from workers.errors import ConfigError, InvalidSpec, PermanentError
from workers.jobs import JobRecord, JobSpec
from workers.providers import validator
from workers.storage import Storage


def parse_spec(data: Mapping[str, Any]) -> JobSpec:
    """Validate a spec's shape; the error names the first offending field."""
    try:
        return JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or _field_of_model_error(first["msg"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidSpec(where, message) from None


def _field_of_model_error(message: str) -> str:
    return "prompt" if "prompt" in message else "spec"


class Client:
    """A producer's handle on vidqueue. Safe to share between threads."""

    def __init__(self, settings: Settings | None = None, catalogue: Catalogue | None = None):
        self.settings = settings or get_settings()
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
    def _celery(self) -> Any:
        """The Celery app used to publish submit steps (by name), on this client's Redis."""
        from config import celery

        if self.settings == get_settings():
            return celery.app
        return celery.make_app(self.settings)

    def validate_config(self) -> None:
        """Load the providers file now (it is otherwise read on first use)."""
        self.catalogue.get(next(iter(self.catalogue.providers)))

    def validate(self, data: Mapping[str, Any] | JobSpec) -> JobSpec:
        """Everything checked before a job is accepted: shape, provider, model rules."""
        spec = data if isinstance(data, JobSpec) else parse_spec(data)
        try:
            config = self.catalogue.get(spec.provider)
        except ConfigError:
            known = ", ".join(sorted(self.catalogue.providers))
            raise InvalidSpec(
                "provider", f"unknown provider {spec.provider!r}; configured: {known}"
            ) from None
        validator(config)(spec)
        if spec.callback_url:
            try:
                webhooks.check_public_url(
                    spec.callback_url, allow_private=self.settings.allow_private_callbacks
                )
            except PermanentError as exc:
                raise InvalidSpec("callback_url", exc.message) from None
        return spec

    def enqueue(self, data: Mapping[str, Any] | JobSpec, *, producer: str = "") -> JobRecord:
        """Accept a job: store it as queued, then fill any free provider slot at once."""
        spec = self.validate(data)
        job_id = uuid.uuid4().hex
        created = self.deps.store.create(job_id, spec, producer=producer)
        assert created is not None
        found, _ = created
        steps.send(self._celery, pipeline.dispatch(spec.provider, self.deps))
        record = self.get(found)
        assert record is not None
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, with fresh presigned URLs for its mirrored files."""
        record = self.deps.store.get(job_id)
        if record is None or not record.result:
            return record
        result = {
            name: {**item, "url": self.storage.presign(item["key"], item["bucket"])}
            for name, item in record.result.items()
        }
        return record.model_copy(update={"result": result})

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job; raises ``KeyError`` for an unknown id and ``CancelRefused`` when it is
        mirroring or finished. A job the provider still works on stays counted (and polled)
        until the provider lets go, unless the provider can cancel it."""
        steps.send(self._celery, pipeline.cancel(job_id, self.deps))
        record = self.get(job_id)
        assert record is not None
        return record

    def events(self, job_id: str) -> list[dict[str, Any]]:
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
        deadline = time.monotonic() + timeout_s
        last: tuple[str, int] | None = None
        while True:
            record = self.get(job_id)
            if record is None:
                raise KeyError(job_id)
            if on_change and (record.state, record.polls) != last:
                last = (record.state, record.polls)
                on_change(record)
            if record.terminal:
                return record
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {record.state} after {timeout_s:.0f}s")
            time.sleep(interval_s)
