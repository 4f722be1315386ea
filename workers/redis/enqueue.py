"""Creating jobs: one Lua call stores a whole batch, and the new records are known without
reading them back.

A new job is fully known when it is created (id, state ``queued``, spec, ``created_at``,
attempts 0, polls 0), so its public record is built here from what was written. Only a job
whose idempotency key was already taken is read back (it may have moved on since).

The script checks every idempotency key first and writes nothing when one is held for a
different request (another fingerprint), so a conflicting batch creates nothing, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from workers.domain.jobs import JobRecord, JobSpec, State, now_iso
from workers.redis import keys

# KEYS[1] = all-jobs zset, KEYS[2] = sequence, KEYS[3] = the producer's jobs zset,
# KEYS[4] = the set of producer zsets, KEYS[5] = the queued state set.
# ARGV[1] = prefix, ARGV[2] = producer, ARGV[3] = created_at, ARGV[4] = the 'created' event
# JSON, ARGV[5] = idempotency TTL s, ARGV[6] = the jobs, a JSON array of
# [id, priority, idempotency key name or '', fingerprint, fair-share key, provider, model, spec].
# Job, events, waiting and fair keys are derived from the prefix (see ``workers.redis.keys``).
# Returns {1, index, existing id, ...} for the jobs whose key was held for the same request
# (0-based indexes; the others were created), or {0, index, holder} when a key is held for
# another request — then nothing was written.
CREATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1]
local jobs = cjson.decode(ARGV[6])
local out, taken, fresh = {1}, {}, {}
for i, job in ipairs(jobs) do
  if job[3] ~= '' then
    local holder, mark
    local mine = fresh[job[3]]
    if mine then
      holder, mark = mine[1], mine[4]
    else
      holder = redis.call('GET', job[3])
      if holder then mark = redis.call('HGET', P .. ':job:' .. holder, 'fingerprint') end
    end
    if holder then
      if mark ~= job[4] then return {0, i - 1, holder} end
      taken[i] = true
      out[#out + 1] = i - 1
      out[#out + 1] = holder
    else
      fresh[job[3]] = job
    end
  end
end
local count = #jobs - (#out - 1) / 2
if count == 0 then return out end
local seq = redis.call('INCRBY', KEYS[2], count) - count
local ids, queues = {}, {}
for i, job in ipairs(jobs) do
  if not taken[i] then
    seq = seq + 1
    local id, fair, provider = job[1], job[5], job[6]
    local score = (9 - job[2]) * 1099511627776 + seq
    local key = P .. ':job:' .. id
    if job[3] ~= '' then redis.call('SET', job[3], id, 'EX', tonumber(ARGV[5])) end
    redis.call('HSET', key, 'score', score, 'id', id, 'state', 'queued', 'provider', provider,
      'model', job[7], 'spec', job[8], 'attempts', 0, 'polls', 0, 'created_at', ARGV[3],
      'priority', job[2], 'producer', ARGV[2], 'fair', fair, 'fingerprint', job[4])
    redis.call('RPUSH', key .. ':events', ARGV[4])
    local waiting = P .. ':wait:' .. provider .. ':' .. fair
    local queue = queues[waiting]
    if not queue then
      queue = {P .. ':fair:' .. provider, fair}
      queues[waiting] = queue
    end
    queue[#queue + 1] = score
    queue[#queue + 1] = id
    ids[#ids + 1] = now
    ids[#ids + 1] = id
  end
end
-- Members are added in chunks: unpack() has a limit on how many values it returns.
local function add(command, key, items, step, from)
  for first = from, #items, step * 500 do
    redis.call(command, key, unpack(items, first, math.min(first + step * 500 - 1, #items)))
  end
end
for waiting, queue in pairs(queues) do
  add('ZADD', waiting, queue, 2, 3)
  local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
  redis.call('ZADD', queue[1], head[2], queue[2])
end
add('ZADD', KEYS[1], ids, 2, 1)
add('ZADD', KEYS[3], ids, 2, 1)
local members = {}
for j = 2, #ids, 2 do members[#members + 1] = ids[j] end
add('SADD', KEYS[5], members, 1, 1)
redis.call('SADD', KEYS[4], KEYS[3])
return out
"""

# A new record's JSON after its spec: the same for every job of one CREATE.
_TAIL: Final = (
    ',"provider_task_id":null,"attempts":0,"polls":0,"created_at":"{created_at}",'
    '"submitted_at":null,"provider_finished_at":null,"completed_at":null,"error":null,'
    '"result":null}}'
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be created: its spec, stored as ``spec_json``, under ``fingerprint``."""

    job_id: str
    spec: JobSpec
    spec_json: str
    fingerprint: str

    @classmethod
    def of(cls, job_id: str, spec: JobSpec, fingerprint: str = "") -> NewJob:
        return cls(job_id, spec, spec.model_dump_json(exclude_none=True), fingerprint)

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
    """What one CREATE did. ``existing``: index → id of each job whose idempotency key was
    already held for the same request (nothing new was made for it). ``conflict``: the index
    of a job whose key was held for another request (then nothing at all was made)."""

    created_at: str
    existing: dict[int, str]
    conflict: int | None = None

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

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
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
        created_at = now_iso()
        event = json.dumps({"at": created_at, "state": State.QUEUED, "event": "created"})
        rows = [_row(job, producer) for job in jobs]
        argv: list[Any] = [keys.PREFIX, producer, created_at, event, keys.IDEMPOTENCY_TTL_S]
        argv.append(json.dumps(rows, ensure_ascii=False, separators=(",", ":")))
        script_keys = [
            keys.all_jobs(),
            keys.sequence(),
            keys.by_producer(producer),
            f"{keys.PREFIX}:producers",
            keys.by_state(State.QUEUED),
        ]
        if pipe is not None:
            self._create(keys=script_keys, args=argv, client=pipe)
            return None
        reply = self._create(keys=script_keys, args=argv)
        return _outcome(created_at, reply)


def _row(job: NewJob, producer: str) -> list[Any]:
    spec = job.spec
    idem = keys.idempotency(spec.idempotency_key) if spec.idempotency_key else ""
    fair = fair_key(spec, producer)
    return [job.job_id, spec.priority, idem, job.fingerprint, fair, spec.provider, spec.model,
            job.spec_json]  # fmt: skip


def _outcome(created_at: str, reply: list[Any]) -> Created:
    ok, *flat = reply
    pairs = {int(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    if ok == 1:
        return Created(created_at, pairs)
    [(index, holder)] = pairs.items()
    return Created(created_at, {index: holder}, conflict=index)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def fair_key(spec: JobSpec, producer: str) -> str:
    """Who shares a provider's slots fairly with whom: the tenant label, else the producer."""
    return spec.labels.get("tenant") or producer or keys.DEFAULT_FAIR
