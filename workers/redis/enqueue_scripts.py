"""The Lua script that creates a batch of jobs, and the arguments it takes
(``workers.redis.enqueue`` runs it).

One call stores the whole batch: it checks every idempotency key first and writes nothing when
one is held for a different request (another fingerprint), so a conflicting batch creates
nothing, atomically. Like every script here it spells no key: each job's keys come in KEYS,
built by ``workers.redis.keys``; only the job an idempotency key already points to is found
inside Redis, by the job-hash prefix in ARGV. A batch's jobs share a few waiting queues, so each
queue's keys come once, and a job's row names its queue.
"""

from __future__ import annotations

from typing import Any, Final

from workers.domain.jobs import JobSpec, State
from workers.redis import keys
from workers.redis.store_scripts import NOW

# KEYS[1] = all-jobs zset, KEYS[2] = sequence, KEYS[3] = the producer's jobs zset,
# KEYS[4] = the set of producer zsets, KEYS[5] = the queued state set; then four per job, in
# batch order: its hash, its events list, its idempotency key (the producer's: another
# producer's same key is another Redis key; '' when none), the same key in the layout before
# producers were in it (read only: it counts for a job of this producer; '' when none); then
# two per waiting queue, in the order of their numbers: the waiting zset, its provider's fair
# zset (``CreateArgs`` builds them).
# ARGV[1] = producer, ARGV[2] = created_at, ARGV[3] = the 'created' event JSON,
# ARGV[4] = idempotency TTL s, ARGV[5] = job-hash prefix (keys.job_prefix(): an idempotency
# key's holder is read here), ARGV[6] = the jobs, a JSON array of
# [id, priority, waiting score before the sequence number (keys.wait_score(priority, 0)),
# fingerprint, fair-share key, provider, model, spec, its waiting queue's number (from 1)].
# Returns {1, index, existing id, ...} for the jobs whose key was held for the same request
# (0-based indexes; the others were created), or {0, index, holder} when a key is held for
# another request — then nothing was written.
CREATE: Final = (
    NOW
    + """
local producer, created_at, created_event = ARGV[1], ARGV[2], ARGV[3]
local idempotency_ttl, job_prefix = tonumber(ARGV[4]), ARGV[5]
local jobs = cjson.decode(ARGV[6])
local all_jobs, sequence, by_producer = KEYS[1], KEYS[2], KEYS[3]
local producers, queued = KEYS[4], KEYS[5]
-- Job i's hash, events list, idempotency key and its old-layout twin; queue q's waiting zset
-- and fair zset.
local function job_keys(i)
  local k = 4 * i + 2
  return KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
end
local function queue_keys(q)
  local k = 4 * #jobs + 2 * q + 4
  return KEYS[k], KEYS[k + 1]
end
local out, taken, fresh = {1}, {}, {}
for i, job in ipairs(jobs) do
  local _, _, idem, legacy = job_keys(i)
  if idem ~= '' then
    local holder, mark
    local mine = fresh[idem]  -- an earlier job of this batch with the same key
    if mine then
      holder, mark = mine[1], mine[4]  -- its id and fingerprint
    else
      holder = redis.call('GET', idem)
      if not holder and legacy ~= '' then
        -- Held in the old layout: this producer's only if the job it names is.
        holder = redis.call('GET', legacy)
        if holder and redis.call('HGET', job_prefix .. holder, 'producer') ~= producer then
          holder = nil
        end
      end
      if holder then mark = redis.call('HGET', job_prefix .. holder, 'fingerprint') end
    end
    if holder then
      if mark ~= job[4] then return {0, i - 1, holder} end  -- job[4]: the fingerprint
      taken[i] = true
      out[#out + 1] = i - 1
      out[#out + 1] = holder
    else
      fresh[idem] = job
    end
  end
end
local count = #jobs - (#out - 1) / 2
if count == 0 then return out end
local seq = redis.call('INCRBY', sequence, count) - count
local ids, queues = {}, {}
for i, job in ipairs(jobs) do
  if not taken[i] then
    seq = seq + 1
    local id, priority, base, fingerprint, fair, provider, model, spec, q = unpack(job)
    local job_key, events_key, idem = job_keys(i)
    local score = base + seq
    if idem ~= '' then redis.call('SET', idem, id, 'EX', idempotency_ttl) end
    redis.call('HSET', job_key, 'score', score, 'id', id, 'state', 'queued',
      'provider', provider, 'model', model, 'spec', spec, 'attempts', 0, 'polls', 0,
      'created_at', created_at, 'priority', priority, 'producer', producer, 'fair', fair,
      'fingerprint', fingerprint)
    redis.call('RPUSH', events_key, created_event)
    local queue = queues[q]  -- {fair-share key, score, id, score, id, ...}
    if not queue then
      queue = {fair}
      queues[q] = queue
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
for q, queue in pairs(queues) do
  local waiting, fair_queue = queue_keys(q)
  add('ZADD', waiting, queue, 2, 2)
  local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
  redis.call('ZADD', fair_queue, head[2], queue[1])
end
add('ZADD', all_jobs, ids, 2, 1)
add('ZADD', by_producer, ids, 2, 1)
local members = {}
for j = 2, #ids, 2 do members[#members + 1] = ids[j] end
add('SADD', queued, members, 1, 1)
redis.call('SADD', producers, by_producer)
return out
"""
)


class CreateArgs:
    """One CREATE's KEYS and job rows, built job by job in the layout its header describes."""

    def __init__(self, producer: str) -> None:
        self._producer = producer
        self._fixed = [keys.all_jobs(), keys.sequence(), keys.by_producer(producer)]
        self._fixed += [keys.producers(), keys.by_state(State.QUEUED)]
        self._jobs: list[str] = []
        self._queues: dict[tuple[str, str], int] = {}
        self.rows: list[list[Any]] = []

    def add(self, job_id: str, spec: JobSpec, spec_json: str, fingerprint: str, fair: str) -> None:
        """Add a job (``fair``: its fair-share key) and, if it is the first for it, its queue."""
        key, producer = spec.idempotency_key, self._producer
        idem = keys.idempotency(key, producer=producer) if key else ""
        legacy = keys.legacy_idempotency(key) if key else ""
        self._jobs += (keys.job(job_id), keys.events(job_id), idem, legacy)
        queue = self._queues.setdefault((spec.provider, fair), len(self._queues) + 1)
        base = keys.wait_score(spec.priority, 0)
        self.rows.append([job_id, spec.priority, base, fingerprint, fair, spec.provider,
                          spec.model, spec_json, queue])  # fmt: skip

    def script_keys(self) -> list[str]:
        out = self._fixed + self._jobs
        for provider, fair in self._queues:
            out += (keys.waiting(provider, fair), keys.fair_queue(provider))
        return out
