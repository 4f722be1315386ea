"""Creating jobs: one Lua call stores a whole batch, and the new records are known without
reading them back.

A new job is fully known when it is created (id, state ``queued``, spec, ``created_at``,
attempts 0, polls 0), so its public record is built here from what was written. Only a job
whose idempotency key was already taken is read back (it may have moved on since), and one
that took a finished result instead of waiting (``reuse_within_s``: it is created succeeded).
The hash stores the spec and the creation time compactly (``workers.domain.lean``); the
record shows them as ever.

The script checks every idempotency key first and writes nothing when one is held for a
different request (another fingerprint), so a conflicting batch creates nothing, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from workers.domain.jobs import JobRecord, JobSpec, State, isoformat, utcnow
from workers.domain.lean import packed_event, packed_spec, stored_moment
from workers.redis import keys
from workers.redis.enqueue_scripts import CREATE, CreateArgs
from workers.redis.replicas import Replication

# A new record's JSON after its spec: the same for every job of one CREATE.
_TAIL: Final = (
    ',"provider_task_id":null,"attempts":0,"polls":0,"created_at":"{created_at}",'
    '"submitted_at":null,"provider_finished_at":null,"completed_at":null,"error":null,'
    '"result":null,"callbacks_armed":false,"reused_from":null}}'
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be created: its spec (``spec_json`` as the record shows it, ``stored``
    as the hash keeps it), under ``fingerprint``. ``fair``: its fair-share key when the caller
    decided it (the HTTP API, from the token), else ``fair_key`` of the spec; the spec itself
    is stored as sent either way."""

    job_id: str
    spec: JobSpec
    spec_json: str
    fingerprint: str
    fair: str | None = None
    stored: str = ""

    @classmethod
    def of(
        cls, job_id: str, spec: JobSpec, fingerprint: str = "", fair: str | None = None
    ) -> NewJob:
        whole = spec.model_dump_json(exclude_none=True)
        return cls(job_id, spec, whole, fingerprint, fair, packed_spec(spec))

    def record(self, created_at: str) -> JobRecord:
        """The record exactly as a read of the new job returns it."""
        return JobRecord(
            id=self.job_id,
            state=State.QUEUED,
            provider=self.spec.provider,
            model=self.spec.model,
            spec=json.loads(self.spec_json),
            created_at=created_at,
        )


@dataclass(frozen=True)
class Created:
    """What one CREATE did. ``existing``: index → id of each job to read back rather than
    render from the spec: those whose idempotency key was already held for the same request
    (nothing new was made for them), and the ``reused`` ones (index → the new job's id,
    created succeeded with a finished result). ``conflict``: the index of a job whose key was
    held for another request (then nothing at all was made)."""

    created_at: str
    existing: dict[int, str]
    conflict: int | None = None
    reused: dict[int, str] = field(default_factory=dict)

    def records_json(self, jobs: Sequence[NewJob]) -> list[str | None]:
        """The JSON record of each job created (None for the ``existing`` ones), as the API
        returns it: the stored spec text is used as it is."""
        tail = _TAIL.format(created_at=self.created_at)
        names: dict[str, str] = {}
        out: list[str | None] = []
        for index, job in enumerate(jobs):
            if index in self.existing:
                out.append(None)
                continue
            spec = job.spec
            provider = names.get(spec.provider) or names.setdefault(
                spec.provider, json.dumps(spec.provider, ensure_ascii=False)
            )
            model = names.get(spec.model) or names.setdefault(
                spec.model, json.dumps(spec.model, ensure_ascii=False)
            )
            out.append(
                f'{{"id":"{job.job_id}","state":"queued","provider":{provider},'
                f'"model":{model},"spec":{job.spec_json}{tail}'
            )
        return out


class Creator:
    """Runs CREATE for a batch of jobs (or one)."""

    def __init__(
        self,
        client: redis.Redis,
        replication: Replication | None = None,
        *,
        changes_maxlen: int = keys.CHANGES_MAXLEN,
    ) -> None:
        self.redis = client
        # A job the API acknowledges must survive a failover (workers.redis.replicas).
        self.replication = replication or Replication()
        # The cap of the producer's change stream each new job is added to.
        self.changes_maxlen = changes_maxlen
        self._create = client.register_script(CREATE)

    def create(
        self,
        jobs: Sequence[NewJob],
        *,
        producer: str = "",
        pipe: redis.client.Pipeline | None = None,
    ) -> Created | None:
        """Store the jobs as queued, each in its provider's waiting set (priority, then FIFO
        in the given order). With ``pipe`` the call is only queued there and returns None."""
        moment = utcnow()
        created_at = isoformat(moment)
        batch = CreateArgs(producer)
        for job in jobs:
            fair = job.fair or fair_key(job.spec, producer)
            stored = job.stored or packed_spec(job.spec)
            batch.add(job.job_id, job.spec, stored, job.fingerprint, fair)
        argv: list[Any] = [producer, stored_moment(moment), keys.RECORD_TTL_S]
        argv += [keys.IDEMPOTENCY_TTL_S, keys.job_prefix()]
        argv.append(json.dumps(batch.rows, ensure_ascii=False, separators=(",", ":")))
        argv.append(packed_event(moment, State.SUCCEEDED, "reused the result of "))
        argv += [created_at, self.changes_maxlen]
        script_keys = batch.script_keys()
        if pipe is not None:
            self._create(keys=script_keys, args=argv, client=pipe)
            return None
        [reply] = self.replication.write(
            self.redis, lambda pipe: self._create(keys=script_keys, args=argv, client=pipe)
        )
        return _outcome(created_at, reply)


def _outcome(created_at: str, reply: list[Any]) -> Created:
    ok, *flat = reply
    pairs: dict[int, str] = {}
    reused: dict[int, str] = {}
    for i in range(0, len(flat), 2):
        index = flat[i] if isinstance(flat[i], int) else _text(flat[i])
        if isinstance(index, str) and index.startswith("r"):
            reused[int(index[1:])] = _text(flat[i + 1])
        pairs[int(str(index).lstrip("r"))] = _text(flat[i + 1])
    if ok == 1:
        return Created(created_at, pairs, reused=reused)
    [(index, holder)] = pairs.items()
    return Created(created_at, {index: holder}, conflict=index)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def fair_key(spec: JobSpec, producer: str) -> str:
    """Who shares a provider's slots fairly with whom: the tenant label, else the producer."""
    return spec.labels.get("tenant") or producer or keys.DEFAULT_FAIR
