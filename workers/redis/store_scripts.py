"""The Lua scripts behind the job store (the gate's are in ``workers.redis.gate_scripts``, the
batch CREATE in ``workers.redis.enqueue_scripts``).

Each script runs atomically in Redis and reads the clock with Redis ``TIME``, so every worker
agrees on "now" whatever its own clock says. No script spells a key: each gets the keys it can
be told in advance in KEYS, and the prefix of those it derives from what it reads in Redis (a
job id from the due zset, a job's current state) in ARGV, all built by ``workers.redis.keys``.
That is fine on one Redis (or Sentinel) — Celery's Redis broker does not support Redis Cluster.
"""

from __future__ import annotations

from typing import Final

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# A job's timeline is one hash field (workers.domain.lean.TIMELINE_FIELD): entries, each ended
# by a newline, at most a cap of them (the oldest go first). A job written before it kept its
# entries in a list key of its own (the "events list" below): it is still expired with the job,
# and its last entry is still the one a move may make redundant while the field is empty.
TIMELINE: Final = """
local function appended(timeline, entry, cap)
  timeline = timeline .. entry .. '\\n'
  local _, count = string.gsub(timeline, '\\n', '')
  local from = 1
  while count > cap do
    from = string.find(timeline, '\\n', from, true) + 1
    count = count - 1
  end
  return from > 1 and string.sub(timeline, from) or timeline
end
"""

# A job's change, as its producer's change stream keeps it (workers.redis.changes): the job
# id, its new state, when (Redis TIME, epoch seconds with µs, as text), its provider and
# model. The stream is capped at about ``cap`` entries (MAXLEN ~: whole nodes are trimmed,
# which is cheap). Needs NOW (``t``).
CHANGE_XADD: Final = """
local function changed_at()
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end
-- One change. With a cap the stream is trimmed here (MAXLEN ~); without one the caller, which
-- adds many in one call, trims once at its end (XTRIM): a per-entry trim check costs a batch
-- of 1,000 about a millisecond. ``at`` may be given once for many (one script: one time).
local function changed(stream, cap, id, state, provider, model, at)
  at = at or changed_at()
  if cap then
    redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', 'id', id, 'state', state, 'at', at,
      'provider', provider, 'model', model)
  else
    redis.call('XADD', stream, '*', 'id', id, 'state', state, 'at', at,
      'provider', provider, 'model', model)
  end
end
"""

# KEYS[1] = job hash, KEYS[2] = due zset, KEYS[3] = the events list of a job written before
# the timeline field (expired with it), KEYS[4] = the new state's set (only with a new state).
# ARGV[1] = state-set prefix (keys.state_prefix(): the state the job leaves is read here),
# ARGV[2] = job id, ARGV[3] = allowed current states (',a,b,'), ARGV[4] = new state ('' = stay),
# ARGV[5] = step offset ms ('' = leave, '-' = clear), ARGV[6] = due offset ms,
# ARGV[7] = timeline entry ('' = none), ARGV[8] = TTL s when terminal, ARGV[9] = field to
# increment ('' = none), ARGV[10] = events cap, ARGV[11] = the end of a timeline entry this move
# makes redundant: the last entry is dropped when it ends so ('' = none; workers.domain.lean),
# ARGV[12] = change-stream prefix (keys.changes_prefix(): the job's producer is read here),
# ARGV[13] = the change stream's cap (MAXLEN ~), ARGV[14..] = field, value pairs (an empty
# value deletes the field).
# A move to another state is added to the job's producer's change stream (CHANGE_XADD), in
# the same call: one XADD per state change, none for a same-state update.
# A step offset of 0 means the caller publishes the step's message right away: the job is
# marked 'sent' (and due again for a check after the due offset). A later step is only
# scheduled: the due zset holds it until a worker's due poller publishes it (workers.steps.due).
# Returns {1, previous state} on success, {0, current state or ''} when refused.
TRANSITION: Final = (
    NOW
    + TIMELINE
    + CHANGE_XADD
    + """
local job_key, due_key, events_key, to_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local state_prefix, job_id, allowed, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local step, due, event, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local incr, events_max, redundant = ARGV[9], ARGV[10], ARGV[11]
local changes_prefix, changes_max = ARGV[12], ARGV[13]
-- One read for the state the CAS checks and what a change-stream entry names.
local job = redis.call('HMGET', job_key, 'state', 'producer', 'provider', 'model')
local state = job[1]
if not state or not string.find(allowed, ',' .. state .. ',', 1, true) then
  return {0, state or ''}
end
-- Every field change goes out as one HSET and one HDEL.
local sets, dels = {}, {}
for i = 14, #ARGV, 2 do
  if ARGV[i + 1] == '' then dels[#dels + 1] = ARGV[i]
  else sets[#sets + 1] = ARGV[i]; sets[#sets + 1] = ARGV[i + 1] end
end
if step == '-' then
  dels[#dels + 1] = 'step_until'; dels[#dels + 1] = 'sent'
  redis.call('ZREM', due_key, job_id)
elseif step ~= '' then
  sets[#sets + 1] = 'step_until'; sets[#sets + 1] = now + tonumber(step)
  if tonumber(step) == 0 then sets[#sets + 1] = 'sent'; sets[#sets + 1] = now
  else dels[#dels + 1] = 'sent' end
  redis.call('ZADD', due_key, now + tonumber(due), job_id)
end
local moved = to ~= '' and to ~= state
if moved then sets[#sets + 1] = 'state'; sets[#sets + 1] = to end
if #dels > 0 then redis.call('HDEL', job_key, unpack(dels)) end
if #sets > 0 then redis.call('HSET', job_key, unpack(sets)) end
if incr ~= '' then redis.call('HINCRBY', job_key, incr, 1) end
if redundant ~= '' or event ~= '' then
  local timeline = redis.call('HGET', job_key, 'timeline') or ''
  local before = timeline
  if redundant ~= '' and timeline ~= '' then
    local start = string.match(string.sub(timeline, 1, -2), '.*\\n()') or 1
    local last = string.sub(timeline, start, -2)
    if #last > #redundant and string.sub(last, -#redundant) == redundant then
      timeline = string.sub(timeline, 1, start - 1)
    end
  elseif redundant ~= '' then
    local last = redis.call('LINDEX', events_key, -1)
    if last and #last > #redundant and string.sub(last, -#redundant) == redundant then
      redis.call('RPOP', events_key)
    end
  end
  if event ~= '' then timeline = appended(timeline, event, tonumber(events_max)) end
  if timeline == '' and before ~= '' then redis.call('HDEL', job_key, 'timeline')
  elseif timeline ~= before then redis.call('HSET', job_key, 'timeline', timeline) end
end
if moved then
  redis.call('SREM', state_prefix .. state, job_id)
  redis.call('SADD', to_key, job_id)
  changed(changes_prefix .. (job[2] or ''), changes_max, job_id, to, job[3] or '', job[4] or '')
  if ttl ~= '' then
    redis.call('EXPIRE', job_key, tonumber(ttl))
    redis.call('EXPIRE', events_key, tonumber(ttl))
  end
end
return {1, state}
"""
)

# A task claims its step before doing anything, so that of two copies of the same step (a
# redelivered message, a re-send) only one runs; the other finds the step taken and exits.
# The claim clears 'sent' (the message has arrived) and makes the job due again when the claim
# lapses, so a step whose worker died is re-sent by a due poller (workers.steps.due).
# KEYS[1] = job hash, KEYS[2] = due zset.
# ARGV[1] = job id, ARGV[2] = allowed states (',a,b,'), ARGV[3] = lease ms (how long the step
# may take), ARGV[4] = due offset ms, ARGV[5] = tolerance ms (a step may start this early).
# Returns {1, state, field, value, ...} when claimed (the job's hash after the claim, saving a
# round trip; without its timeline, which no step reads), {0, state} for a wrong state,
# {-1, state} when not yet due.
CLAIM: Final = (
    NOW
    + """
local job_key, due_key = KEYS[1], KEYS[2]
local job_id, allowed, lease, due, tolerance = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local flat = redis.call('HGETALL', job_key)
local at = {}
for i = 1, #flat, 2 do at[flat[i]] = i + 1 end
local state = at.state and flat[at.state]
if not state or not string.find(allowed, ',' .. state .. ',', 1, true) then
  return {0, state or ''}
end
if now + tonumber(tolerance) < tonumber(at.step_until and flat[at.step_until] or '0') then
  return {-1, state}
end
local step_until = tostring(now + tonumber(lease))
redis.call('HSET', job_key, 'step_until', step_until)
if at.sent then redis.call('HDEL', job_key, 'sent') end
redis.call('ZADD', due_key, now + tonumber(due), job_id)
-- The hash as it is now: step_until renewed, sent gone.
local out = {1, state}
for i = 1, #flat, 2 do
  if flat[i] == 'step_until' then out[#out + 1] = 'step_until'; out[#out + 1] = step_until
  elseif flat[i] ~= 'sent' and flat[i] ~= 'timeline' then
    out[#out + 1] = flat[i]; out[#out + 1] = flat[i + 1]
  end
end
if not at.step_until then out[#out + 1] = 'step_until'; out[#out + 1] = step_until end
return out
"""
)

# A provider's callback for a job whose callbacks are armed (poll_mode 'safety'): publish its
# next poll now instead of at its safety time (docs/callbacks.md). Only a poll that waits on
# its schedule is brought forward: one whose message is out ('sent') or that a worker runs
# (claimed: its due time is its lease's end plus the grace, not its step time) is left alone,
# so no second poll chain starts. At most one hastening per min gap (replays).
# KEYS[1] = job hash, KEYS[2] = due zset, KEYS[3] = the provider's callback counters hash.
# ARGV[1] = job id, ARGV[2] = provider (the callback's), ARGV[3] = min gap ms, ARGV[4] = grace
# ms (when the poll published now is checked), ARGV[5] = outcome counted when the body said
# the task is still working ('' = poll now if we may).
# Returns the outcome: 'hastened' (the caller publishes the poll now), or why not: 'unknown',
# 'not_armed', 'finished', 'in_flight', 'too_soon', or ARGV[5].
HASTEN: Final = (
    NOW
    + """
local job_key, due_key, counts_key = KEYS[1], KEYS[2], KEYS[3]
local job_id, provider, min_gap, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local working = ARGV[5]
local f = redis.call('HMGET', job_key, 'state', 'provider', 'poll_mode', 'at_provider', 'sent',
  'step_until', 'hastened')
local state, at_provider, sent = f[1], f[4], f[5]
local outcome = 'hastened'
if not state or f[2] ~= provider then outcome = 'unknown'
elseif f[3] ~= 'safety' then outcome = 'not_armed'
elseif not (state == 'running' or (state == 'cancelled' and at_provider == '1')) then
  outcome = 'finished'
elseif working ~= '' then outcome = working
elseif sent or tonumber(redis.call('ZSCORE', due_key, job_id) or '-1') ~= tonumber(f[6] or '0')
then outcome = 'in_flight'
elseif now - tonumber(f[7] or '0') < min_gap then outcome = 'too_soon'
else
  redis.call('HSET', job_key, 'step_until', now, 'sent', now, 'hastened', now)
  redis.call('ZADD', due_key, now + grace, job_id)
end
redis.call('HINCRBY', counts_key, outcome, 1)
return outcome
"""
)

# What a due poller needs to know of a job to publish (or skip) its step.
DUE_FIELDS: Final = (
    "state",
    "sent",
    "step_until",
    "key_id",
    "at_provider",
    "provider_task_id",
    "notify",
    "provider",
    "provider_finished_at",
)

# Takes the due jobs for one poller: each is due again after the recheck time, so another
# poller skips it, and a poller killed before publishing loses nothing (it comes due again).
# A job not yet 'sent' is marked sent and claimable now ('send'; 'resend' when its step's claim
# lapsed: its worker died); one already sent but never claimed is returned for a check
# ('check': is its message still queued, or lost?). Gone jobs leave the due zset.
# KEYS[1] = due zset. ARGV[1] = job-hash prefix (keys.job_prefix(): the ids come from the due
# zset), ARGV[2] = limit, ARGV[3] = recheck ms, ARGV[4..] = the fields to return (DUE_FIELDS).
# Returns a flat list: per job, its id, the kind, then the fields' values ('' when unset).
TAKE_DUE: Final = (
    NOW
    + """
local due_key = KEYS[1]
local job_prefix, limit, recheck = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wanted = {unpack(ARGV, 4)}
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local out = {}
for j = 1, #due, 2 do
  local id, score = due[j], tonumber(due[j + 1])
  local job_key = job_prefix .. id
  local values = redis.call('HMGET', job_key, unpack(wanted))
  if not values[1] then
    redis.call('ZREM', due_key, id)
  else
    redis.call('ZADD', due_key, now + recheck, id)
    local kind = 'check'
    if not values[2] then
      -- values[3] is step_until: a claim's lease end when the due time is past it
      kind = score > tonumber(values[3] or '0') and 'resend' or 'send'
      redis.call('HSET', job_key, 'sent', now, 'step_until', now)
    end
    out[#out + 1] = id
    out[#out + 1] = kind
    for i = 1, #wanted do out[#out + 1] = values[i] or '' end
  end
end
return out
"""
)

# A step whose message is lost (sent, never claimed, no longer in its queue) is sent again.
# KEYS[1] = job hash, KEYS[2] = due zset. ARGV[1] = job id, ARGV[2] = expected state,
# ARGV[3] = recheck ms, ARGV[4] = timeline entry, ARGV[5] = timeline cap.
# Returns 1 when the step was marked sent again (and due for a check after the recheck), else 0.
RESEND: Final = (
    NOW
    + TIMELINE
    + """
local job_key, due_key = KEYS[1], KEYS[2]
local job_id, expected, recheck, event, events_max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = redis.call('HMGET', job_key, 'state', 'sent', 'timeline')
if f[1] ~= expected or not f[2] then return 0 end
redis.call('HSET', job_key, 'sent', now, 'step_until', now,
  'timeline', appended(f[3] or '', event, tonumber(events_max)))
redis.call('ZADD', due_key, now + tonumber(recheck), job_id)
return 1
"""
)

# An event of its own on an existing job's timeline (nothing else changes).
# KEYS[1] = job hash. ARGV[1] = timeline entry, ARGV[2] = timeline cap.
# Returns 1 when added, 0 when there is no such job.
NOTE: Final = (
    TIMELINE
    + """
local job_key = KEYS[1]
local entry, cap = ARGV[1], tonumber(ARGV[2])
local f = redis.call('HMGET', job_key, 'state', 'timeline')
if not f[1] then return 0 end
redis.call('HSET', job_key, 'timeline', appended(f[2] or '', entry, cap))
return 1
"""
)

# Drops from the indexes the ids of records that expired. Only ids created more than the
# record TTL ago can have expired, so the scan starts from the oldest and stops there.
# (Readers of the producer indexes skip ids whose record is gone.)
# KEYS[1] = all-jobs zset, KEYS[2] = the set of producer zsets, KEYS[3..] = every state's set.
# ARGV[1] = job-hash prefix (keys.job_prefix(): the ids come from the all-jobs zset),
# ARGV[2] = TTL ms, ARGV[3] = limit, ARGV[4] = how long after the TTL a producer index drops
# an id, ms (keys.PRODUCER_INDEX_SLACK_S). Returns how many ids were dropped.
PRUNE: Final = (
    NOW
    + """
local all_jobs, producers = KEYS[1], KEYS[2]
local job_prefix, ttl = ARGV[1], tonumber(ARGV[2])
local limit, slack = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', all_jobs, '-inf', now - ttl, 'LIMIT', 0, limit)
local dropped = 0
for _, id in ipairs(old) do
  if redis.call('EXISTS', job_prefix .. id) == 0 then
    redis.call('ZREM', all_jobs, id)
    for i = 3, #KEYS do redis.call('SREM', KEYS[i], id) end
    dropped = dropped + 1
  end
end
-- Producer indexes cannot be told which ids expired; trim what is surely gone.
for _, index in ipairs(redis.call('SMEMBERS', producers)) do
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl - slack)
end
return dropped
"""
)
