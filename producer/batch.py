"""Many jobs at once; job ids; and idempotency: what makes two requests "the same".

A batch is all or nothing at validation: every spec is checked before anything is written,
and the first bad one is reported as ``jobs.{index}.{field}``. Idempotency keys already in
use are checked before creating too, so a conflicting batch creates nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import redis

from workers import keys
from workers.errors import InvalidSpec, VidqueueError
from workers.jobs import JobSpec

MAX_BATCH: Final = 1000

_id_lock = threading.Lock()
_last_id: list[int] = [0, 0]  # the millisecond and counter of the previous id


def new_job_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: time-ordered, and strictly increasing within this
    process. Listings sort jobs created in the same millisecond (a batch) by id, so those
    ids keep the batch's order."""
    with _id_lock:
        now = time.time_ns() // 1_000_000
        millis, counter = _last_id
        if now > millis:
            millis, counter = now, 0
        elif counter < 0xFFF:
            counter += 1
        else:
            millis, counter = millis + 1, 0
        _last_id[:] = [millis, counter]
    tail = (0b10 << 62) | secrets.randbits(62)
    return f"{millis:012x}7{counter:03x}{tail:016x}"


class IdempotencyConflict(VidqueueError):
    """The idempotency key was already used with a different job spec or by another producer."""

    code = "idempotency_conflict"

    def __init__(self, message: str, *, field: str = "idempotency_key") -> None:
        super().__init__(message)
        self.field = field


def fingerprint(spec: JobSpec, producer: str) -> str:
    """The producer and the canonical spec (key order, defaults and the idempotency key itself
    do not count), hashed. Stored with the job; compared when its key comes back."""
    canonical = spec.model_dump(mode="json", exclude_none=True, exclude={"idempotency_key"})
    text = json.dumps([producer, canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def bare_message(exc: InvalidSpec) -> str:
    """The message of an ``InvalidSpec`` without its ``field: `` prefix."""
    return exc.message.removeprefix(f"{exc.field}: ")


def validate_all(
    specs: Sequence[Mapping[str, Any] | JobSpec],
    validate: Callable[[Mapping[str, Any] | JobSpec], JobSpec],
    idempotency_key: str | None = None,
) -> list[JobSpec]:
    """Every spec validated, or ``InvalidSpec`` naming ``jobs.{index}.{field}``."""
    if not specs:
        raise InvalidSpec("jobs", "a batch needs at least one job")
    if len(specs) > MAX_BATCH:
        raise InvalidSpec("jobs", f"at most {MAX_BATCH} jobs per batch, got {len(specs)}")
    valid = []
    for index, data in enumerate(specs):
        if not isinstance(data, Mapping | JobSpec):
            raise InvalidSpec(f"jobs.{index}", "must be a JSON object (a job spec)")
        if idempotency_key:
            data = _with_key(data, f"{idempotency_key}:{index}")
        try:
            valid.append(validate(data))
        except InvalidSpec as exc:
            raise InvalidSpec(f"jobs.{index}.{exc.field}", bare_message(exc)) from None
    return valid


def _with_key(data: Mapping[str, Any] | JobSpec, key: str) -> Mapping[str, Any] | JobSpec:
    if isinstance(data, JobSpec):
        return data if data.idempotency_key else data.model_copy(update={"idempotency_key": key})
    return data if data.get("idempotency_key") else {**data, "idempotency_key": key}


def check_keys(client: redis.Redis, specs: Sequence[JobSpec], marks: Sequence[str]) -> None:
    """Refuse the batch before anything is created when an idempotency key is taken by a
    different request, or used twice in the batch for different specs."""
    keyed = [(i, spec.idempotency_key) for i, spec in enumerate(specs) if spec.idempotency_key]
    if not keyed:
        return
    first: dict[str, int] = {}
    for index, key in keyed:
        if key in first and marks[first[key]] != marks[index]:
            raise IdempotencyConflict(
                f"jobs[{index}] reuses the idempotency key of jobs[{first[key]}] for another spec",
                field=f"jobs.{index}.idempotency_key",
            )
        first.setdefault(key, index)
    taken: list[bytes | None] = client.mget([keys.idempotency(k) for _, k in keyed])  # type: ignore[assignment]
    holders = [
        (index, job_id.decode()) for (index, _), job_id in zip(keyed, taken, strict=True) if job_id
    ]
    _compare(client, holders, marks)


def check_reused(client: redis.Redis, reused: list[tuple[int, str]], marks: Sequence[str]) -> None:
    """After creating: ``(index, job id)`` of each job whose key was taken meanwhile (a race
    with another request) must hold the same spec."""
    _compare(client, reused, marks)


def _compare(client: redis.Redis, holders: list[tuple[int, str]], marks: Sequence[str]) -> None:
    if not holders:
        return
    pipe = client.pipeline(transaction=False)
    for _, job_id in holders:
        pipe.hget(keys.job(job_id), "fingerprint")
    for (index, _), stored in zip(holders, pipe.execute(), strict=True):
        if stored is None or stored.decode() != marks[index]:
            raise IdempotencyConflict(
                f"jobs[{index}]: this idempotency key was already used with a different job spec",
                field=f"jobs.{index}.idempotency_key",
            )


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, spec)`` of a JSON Lines file (blank lines and ``#`` comments skipped);
    an error names the line."""
    return list(_specs(path.read_text(encoding="utf-8").splitlines()))


def _specs(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"line {number}", f"not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidSpec(f"line {number}", "must be a JSON object (a job spec)")
        yield number, data


def chunks(items: Sequence[Any], size: int = MAX_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
