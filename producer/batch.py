"""Many jobs at once; job ids; and idempotency: what makes two requests "the same".

A batch is all or nothing at validation: every spec is checked before anything is written,
and the first bad one is reported as ``jobs.{index}.{field}``. An idempotency key used
twice in the batch for different specs is refused before creating; one already held for
another request is refused by the create script itself, which then writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import uuid_utils
from pydantic import TypeAdapter, ValidationError

from workers.domain.errors import IdempotencyConflict, InvalidSpec, TenantNotAllowed
from workers.domain.jobs import JobRecord, JobSpec
from workers.redis import enqueue

MAX_BATCH: Final = 1000

_SPECS: Final = TypeAdapter(list[JobSpec])


def new_job_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits (no dashes), made by ``uuid_utils.uuid7``:
    time-ordered, and strictly increasing within this process, across threads (the library
    keeps a counter under the millisecond, RFC 9562 §6.2, and never moves the time ahead while
    the counter lasts). Listings sort jobs created in the same millisecond (a batch) by id, so
    those ids keep the batch's order. ``workers.domain.uuid7`` reads the time back."""
    return uuid_utils.uuid7().hex


def fingerprint(spec: JobSpec, producer: str) -> str:
    """The producer and the canonical spec (key order, defaults and the idempotency key itself
    do not count), hashed. Stored with the job; compared when its key comes back — so a job
    without an idempotency key has none (""): nothing would ever compare it."""
    if not spec.idempotency_key:
        return ""
    canonical = spec.model_dump(mode="json", exclude_none=True, exclude={"idempotency_key"})
    text = json.dumps([producer, canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def new_jobs(
    specs: Sequence[JobSpec],
    producer: str,
    fair: Callable[[JobSpec], str] | None = None,
    *,
    one: bool = False,
) -> list[enqueue.NewJob]:
    """The jobs to create from valid specs, each with its id, fingerprint and fair-share key.
    ``fair`` is the HTTP API's (from the caller's token, see ``producer.tokens``); without it
    the key is read from the spec when the job is created (a trusted direct client). In a
    batch, a ``TenantNotAllowed`` names ``jobs.{index}.{field}``."""
    jobs = []
    for index, spec in enumerate(specs):
        try:
            key = fair(spec) if fair else None
        except TenantNotAllowed as exc:
            if one:
                raise
            bare = exc.message.removeprefix(f"{exc.field}: ")
            raise TenantNotAllowed(f"jobs.{index}.{exc.field}", bare) from None
        jobs.append(enqueue.NewJob.of(new_job_id(), spec, fingerprint(spec, producer), key))
    return jobs


def bare_message(exc: InvalidSpec) -> str:
    """The message of an ``InvalidSpec`` without its ``field: `` prefix."""
    return exc.message.removeprefix(f"{exc.field}: ")


def validate_all(
    specs: Sequence[Mapping[str, Any] | JobSpec],
    validate: Callable[[Mapping[str, Any] | JobSpec], JobSpec],
    idempotency_key: str | None = None,
) -> list[JobSpec]:
    """Every spec validated, or ``InvalidSpec`` naming ``jobs.{index}.{field}`` of the first
    bad one. The shapes are checked together first (one pydantic call); when one is wrong,
    each spec is checked in turn, so the error is the same as checking them one by one."""
    if not specs:
        raise InvalidSpec("jobs", "a batch needs at least one job")
    if len(specs) > MAX_BATCH:
        raise InvalidSpec("jobs", f"at most {MAX_BATCH} jobs per batch, got {len(specs)}")
    items: Sequence[Any] = specs
    if idempotency_key:
        items = [_with_key(data, f"{idempotency_key}:{i}") for i, data in enumerate(specs)]
    shaped = _shapes(items)
    valid = []
    for index, data in enumerate(items):
        if not isinstance(data, Mapping | JobSpec):
            raise InvalidSpec(f"jobs.{index}", "must be a JSON object (a job spec)")
        try:
            valid.append(validate(shaped[index] if shaped else data))
        except InvalidSpec as exc:
            raise InvalidSpec(f"jobs.{index}.{exc.field}", bare_message(exc)) from None
    return valid


def _shapes(items: Sequence[Any]) -> list[JobSpec] | None:
    """Every item as a ``JobSpec``, or None when one is not a valid one."""
    try:
        return _SPECS.validate_python(items)
    except ValidationError:
        return None


def _with_key(data: Any, key: str) -> Any:
    if isinstance(data, JobSpec):
        return data if data.idempotency_key else data.model_copy(update={"idempotency_key": key})
    if isinstance(data, Mapping):
        return data if data.get("idempotency_key") else {**data, "idempotency_key": key}
    return data


def check_keys(specs: Sequence[JobSpec], marks: Sequence[str]) -> None:
    """Refuse the batch before anything is created when an idempotency key is used twice in
    it for different specs. (A key already taken by a different request is refused by the
    CREATE script itself, atomically: see ``enqueue.Creator``.)"""
    first: dict[str, int] = {}
    for index, spec in enumerate(specs):
        key = spec.idempotency_key
        if not key:
            continue
        if key in first and marks[first[key]] != marks[index]:
            raise IdempotencyConflict(
                f"jobs[{index}] reuses the idempotency key of jobs[{first[key]}] for another spec",
                field=f"jobs.{index}.idempotency_key",
            )
        first.setdefault(key, index)


def conflict(index: int, *, one: bool) -> IdempotencyConflict:
    """The error for a key already used by this producer with a different spec. (Keys are
    per producer: another producer's same key makes its own job.)"""
    message = "this idempotency key was already used with a different job spec"
    if one:
        return IdempotencyConflict(message)
    return IdempotencyConflict(f"jobs[{index}]: {message}", field=f"jobs.{index}.idempotency_key")


@dataclass(frozen=True)
class Accepted:
    """Jobs accepted in one call, in the order asked: the new ones as created (never read
    back), and ``existing`` (index → record read back) for those an idempotency key already
    made."""

    jobs: Sequence[enqueue.NewJob]
    created: enqueue.Created
    existing: Mapping[int, JobRecord]

    @property
    def providers(self) -> list[str]:
        return list(dict.fromkeys(job.spec.provider for job in self.jobs))

    def records(self) -> list[JobRecord]:
        at = self.created.created_at
        return [self.existing.get(i) or job.record(at) for i, job in enumerate(self.jobs)]

    def json(self) -> list[str]:
        """Each record as the API returns it (new ones from the stored spec text)."""
        new = self.created.records_json(self.jobs)
        return [text or self.existing[i].model_dump_json() for i, text in enumerate(new)]
