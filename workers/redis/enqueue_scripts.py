"""The Lua script that creates a batch of jobs, and the arguments it takes
(``workers.redis.enqueue`` runs it).

One call stores the whole batch: it checks every idempotency key first and writes nothing when
one is held for a different request (another fingerprint), so a conflicting batch creates
nothing, atomically. A job that asks for reuse (``workers.domain.reuse``) and finds a recent
success of its generation is created succeeded in the same call. Like every script here it
spells no key: each job's keys come in KEYS, built by ``workers.redis.keys``; only the job an
idempotency key or a reuse key points to is found inside Redis, by the job-hash prefix in
ARGV. A batch's jobs share a few waiting queues, so each queue's keys come once, and a job's
row names its queue.
"""

from __future__ import annotations

from typing import Any, Final

from workers.domain.jobs import JobSpec, State
from workers.domain.reuse import generation_digest
from workers.redis import keys, store_scripts
from workers.redis.store_scripts import NOW

# KEYS[1] = all-jobs zset, KEYS[2] = sequence, KEYS[3] = the producer's jobs zset,
# KEYS[4] = the set of producer zsets, KEYS[5] = the queued state set, KEYS[6] = the succeeded
# state set, KEYS[7] = the due zset, KEYS[8] = reused results counted by provider, KEYS[9] =
# the producer's change stream (each job created is added to it); then four per job, in
# batch order: its hash, its idempotency key (the producer's: another producer's same key is
# another Redis key; '' when none), the same key in the layout
# before producers were in it (read only: it counts for a job of this producer; '' when
# none), its generation's reuse key ('' when the spec does not ask for reuse); then two per
# waiting queue, in the order of their numbers: the waiting zset, its provider's fair zset
# (``CreateArgs`` builds them).
# ARGV[1] = producer, ARGV[2] = created_at as stored (µs: workers.domain.lean.stored_moment),
# ARGV[3] = a finished record's TTL s,
# ARGV[4] = idempotency TTL s, ARGV[5] = job-hash prefix (keys.job_prefix(): an idempotency
# key's holder, a reused result's job are read here), ARGV[6] = the jobs, a JSON array of
# [id, priority, waiting score before the sequence number (keys.wait_score(priority, 0)),
# fingerprint ('' = none), fair-share key, provider, model, spec (as stored:
# workers.domain.lean), its waiting queue's number (from 1), reuse window ms (0 = none),
# '1' when it has a webhook to send], ARGV[7] = a reused job's timeline
# entry, but for the original's id and the newline that ends it (workers.domain.lean),
# ARGV[8] = created_at as the record shows it (a reused job's completed_at), ARGV[9] = the
# change stream's cap (store_scripts.CHANGE_XADD: one XADD per job created, then one XTRIM
# MAXLEN ~ for the call).
# A job asking for reuse whose generation succeeded (and was mirrored) within its window, by a
# job still in Redis, is created succeeded at once, pointing at that job's files
# ('shared_result', 'reused_from'; the original's 'reused' counts such jobs), and never waits
# for a slot; the lookup and the creation are one atomic step, so no other write comes between
# them. Only the fields a job has are written (no zero counters, no empty fingerprint), and its
# timeline (a hash field) starts with its first change (the creation is read back from
# created_at).
# Returns {1, index, id, ...}: the jobs whose key was held for the same request (0-based
# indexes; the id is the existing job's), and the reused ones (their index prefixed 'r'; the
# id is the new job's); the others were created queued. {0, index, holder} when a key is held
# for another request — then nothing was written.
CREATE: Final = (
    NOW
    + store_scripts.CHANGE_XADD
    + """
local producer, created_at, record_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local idempotency_ttl, job_prefix = tonumber(ARGV[4]), ARGV[5]
local jobs = cjson.decode(ARGV[6])
local reused_event, created_iso, changes_max = ARGV[7], ARGV[8], ARGV[9]
local all_jobs, sequence, by_producer = KEYS[1], KEYS[2], KEYS[3]
local producers, queued, succeeded, due_key, reused_counts = KEYS[4], KEYS[5], KEYS[6], KEYS[7],
  KEYS[8]
local changes_key = KEYS[9]
local changed_on = changed_at()  -- every job of the call is created at the same moment
-- Job i's hash, idempotency key, its old-layout twin and its reuse key; queue q's waiting
-- zset and fair zset.
local function job_keys(i)
  local k = 4 * i + 6
  return KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
end
local function queue_keys(q)
  local k = 4 * #jobs + 2 * q + 8
  return KEYS[k], KEYS[k + 1]
end
local out, taken, fresh = {1}, {}, {}
for i, job in ipairs(jobs) do
  local _, idem, legacy = job_keys(i)
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
      if holder then mark = redis.call('HGET', job_prefix .. holder, 'fingerprint') or '' end
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
-- The job whose result job i may take: a success of the same generation within the window.
local function reusable(i, job)
  local _, _, _, reuse_key = job_keys(i)
  if reuse_key == '' then return nil end
  local found = redis.call('GET', reuse_key)  -- '{success s}/{job id}'
  if not found then return nil end
  local at, origin = string.match(found, '^(%d+)/(.+)$')
  if not at or now - tonumber(at) * 1000 > tonumber(job[10]) then return nil end
  local f = redis.call('HMGET', job_prefix .. origin, 'state', 'provider', 'result', 'model')
  if f[1] ~= 'succeeded' or f[2] ~= job[6] or f[4] ~= job[7] or not f[3] then return nil end
  return origin, f[3]
end
local count = #jobs - (#out - 1) / 2
if count == 0 then return out end
local seq = redis.call('INCRBY', sequence, count) - count
local ids, queues, done = {}, {}, {}
for i, job in ipairs(jobs) do
  if not taken[i] then
    seq = seq + 1
    local id, priority, base, fingerprint, fair, provider, model, spec, q = unpack(job)
    local job_key, idem = job_keys(i)
    if idem ~= '' then redis.call('SET', idem, id, 'EX', idempotency_ttl) end
    local origin, result = reusable(i, job)
    if origin then
      redis.call('HSET', job_key, 'id', id, 'state', 'succeeded', 'provider', provider,
        'model', model, 'spec', spec, 'created_at', created_at, 'completed_at', created_iso,
        'producer', producer, 'fair', fair, 'reused_from', origin, 'shared_result', result,
        'timeline', reused_event .. origin .. '\\n')
      if job[11] == '1' then  -- its webhook: published by a due poller at once
        redis.call('HSET', job_key, 'notify', 'pending', 'step_until', now)
        redis.call('ZADD', due_key, now, id)
      end
      redis.call('EXPIRE', job_key, record_ttl)
      redis.call('HINCRBY', reused_counts, provider, 1)
      -- The original counts the records that share its files (a purge may keep them for those).
      redis.call('HINCRBY', job_prefix .. origin, 'reused', 1)
      done[#done + 1] = id
      changed(changes_key, nil, id, 'succeeded', provider, model, changed_on)
      out[#out + 1] = 'r' .. (i - 1)
      out[#out + 1] = id
    else
      local score = base + seq
      redis.call('HSET', job_key, 'score', score, 'id', id, 'state', 'queued',
        'provider', provider, 'model', model, 'spec', spec, 'created_at', created_at,
        'producer', producer, 'fair', fair)
      if fingerprint ~= '' then redis.call('HSET', job_key, 'fingerprint', fingerprint) end
      local queue = queues[q]  -- {fair-share key, score, id, score, id, ...}
      if not queue then
        queue = {fair}
        queues[q] = queue
      end
      queue[#queue + 1] = score
      queue[#queue + 1] = id
      changed(changes_key, nil, id, 'queued', provider, model, changed_on)
    end
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
local members, finished = {}, {}
for j = 2, #ids, 2 do members[#members + 1] = ids[j] end
for _, id in ipairs(done) do finished[id] = true end
local waiting_ids = {}
for _, id in ipairs(members) do
  if not finished[id] then waiting_ids[#waiting_ids + 1] = id end
end
add('SADD', queued, waiting_ids, 1, 1)
add('SADD', succeeded, done, 1, 1)
redis.call('SADD', producers, by_producer)
if #members > 0 then redis.call('XTRIM', changes_key, 'MAXLEN', '~', changes_max) end
return out
"""
)


class CreateArgs:
    """One CREATE's KEYS and job rows, built job by job in the layout its header describes."""

    def __init__(self, producer: str) -> None:
        self._producer = producer
        self._fixed = [keys.all_jobs(), keys.sequence(), keys.by_producer(producer)]
        self._fixed += [keys.producers(), keys.by_state(State.QUEUED)]
        self._fixed += [keys.by_state(State.SUCCEEDED), keys.due(), keys.reused()]
        self._fixed += [keys.changes(producer)]
        self._jobs: list[str] = []
        self._queues: dict[tuple[str, str], int] = {}
        self.rows: list[list[Any]] = []

    def add(self, job_id: str, spec: JobSpec, stored: str, fingerprint: str, fair: str) -> None:
        """Add a job (``stored``: its spec as the hash keeps it, ``fair``: its fair-share key)
        and, if it is the first for it, its queue."""
        key, producer = spec.idempotency_key, self._producer
        idem = keys.idempotency(key, producer=producer) if key else ""
        legacy = keys.legacy_idempotency(key) if key else ""
        window_ms = (spec.reuse_within_s or 0) * 1000
        reuse = keys.reuse(generation_digest(spec)) if window_ms else ""
        self._jobs += (keys.job(job_id), idem, legacy, reuse)
        queue = self._queues.setdefault((spec.provider, fair), len(self._queues) + 1)
        base = keys.wait_score(spec.priority, 0)
        webhook = "1" if spec.callback_url else ""
        self.rows.append([job_id, spec.priority, base, fingerprint, fair, spec.provider,
                          spec.model, stored, queue, window_ms, webhook])  # fmt: skip

    def script_keys(self) -> list[str]:
        out = self._fixed + self._jobs
        for provider, fair in self._queues:
            out += (keys.waiting(provider, fair), keys.fair_queue(provider))
        return out
