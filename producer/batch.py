"""Many jobs at once; job ids; and idempotency: what makes two requests "the same".

A batch is all or nothing at validation: every spec is checked before anything is written,
and the first bad one is reported as ``jobs.{index}.{field}``. An idempotency key used
twice in the batch for different specs is refused before creating; one already held for
another request is refused by the create script itself, which then writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from weakref import WeakKeyDictionary

from pydantic import TypeAdapter, ValidationError

from config.providers import Catalogue
from workers.domain.errors import ConfigError, IdempotencyConflict, InvalidSpec
from workers.domain.jobs import JobRecord, JobSpec
from workers.providers import validator
from workers.redis.enqueue import Created, NewJob

MAX_BATCH: Final = 1000

log = logging.getLogger("vidqueue.client")
_SPECS: Final = TypeAdapter(list[JobSpec])

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


def fingerprint(spec: JobSpec, producer: str) -> str:
    """The producer and the canonical spec (key order, defaults and the idempotency key itself
    do not count), hashed. Stored with the job; compared when its key comes back — so a job
    without an idempotency key has none (""): nothing would ever compare it."""
    if not spec.idempotency_key:
        return ""
    canonical = spec.model_dump(mode="json", exclude_none=True, exclude={"idempotency_key"})
    text = json.dumps([producer, canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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


class Adapters:
    """Each provider's name and spec check (its adapter's rules), looked up once."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._found: dict[str, tuple[str, Callable[[JobSpec], None]]] = {}

    def get(self, provider: str) -> tuple[str, Callable[[JobSpec], None]]:
        found = self._found.get(provider)
        if found is None:
            try:
                config = self.catalogue.get(provider)
            except ConfigError:
                known = ", ".join(sorted(self.catalogue.providers))
                raise InvalidSpec(
                    "provider", f"unknown provider {provider!r}; configured: {known}"
                ) from None
            found = self._found[provider] = (config.name, validator(config))
        return found


def adapter_checks(provider: str, check: Callable[[JobSpec], None], spec: JobSpec) -> None:
    """The adapter's model rules. Whatever else an adapter raises on odd input is still the
    input's fault: it becomes ``InvalidSpec`` (and is logged), never a server error."""
    try:
        check(spec)
    except InvalidSpec:
        raise
    except Exception as exc:
        log.exception("%s: validating a spec failed", provider)
        raise InvalidSpec(
            "spec", f"{provider} cannot take this spec ({type(exc).__name__})"
        ) from None


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
    CREATE script itself, atomically: see ``workers.redis.enqueue``.)"""
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
    """The error for a key already used with a different spec (or by another producer)."""
    message = "this idempotency key was already used with a different job spec"
    if one:
        return IdempotencyConflict(message)
    return IdempotencyConflict(f"jobs[{index}]: {message}", field=f"jobs.{index}.idempotency_key")


@dataclass(frozen=True)
class Accepted:
    """Jobs accepted in one call, in the order asked: the new ones as created (never read
    back), and ``existing`` (index → record read back) for those an idempotency key already
    made."""

    jobs: Sequence[NewJob]
    created: Created
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


class Dispatches:
    """Fills providers' free slots after enqueues, on the event loop, once for a burst: a
    dispatch asked for starts within ``linger_s``, after every enqueue that asked for it.
    (Should it fail, or the loop end first, the sweep fills free slots too.)"""

    def __init__(self, dispatch: Callable[[list[str]], None], linger_s: float = 0.005) -> None:
        self.dispatch = dispatch
        self.linger_s = linger_s
        self._pending: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, None]]
        self._pending = WeakKeyDictionary()

    async def soon(self, providers: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending.setdefault(loop, {})
        if not pending:
            loop.call_later(self.linger_s, self._run, loop)
        pending.update(dict.fromkeys(providers))

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        providers = list(self._pending.pop(loop, {}))
        try:
            self.dispatch(providers)
        except Exception:
            log.exception("dispatch after enqueue failed (providers %s)", providers)


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
