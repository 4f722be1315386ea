"""The Lua scripts behind the job store and the concurrency gate.

Each script runs atomically in Redis and reads the clock with Redis ``TIME``, so every worker
agrees on "now" whatever its own clock says. Job, state-index and event keys are derived inside
the scripts from the prefix (ARGV), which is fine on one Redis (or Sentinel) — Celery's Redis
broker does not support Redis Cluster anyway.
"""

from __future__ import annotations

from typing import Final

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] = job hash, KEYS[2] = waiting zset, KEYS[3] = all-jobs zset, KEYS[4] = sequence,
# KEYS[5] = idempotency key (may be an unused name when ARGV[4] == ''), KEYS[6] = events list,
# KEYS[7] = the producer's jobs zset.
# ARGV[1] = prefix, ARGV[2] = job id, ARGV[3] = priority, ARGV[4] = idempotency key or '',
# ARGV[5] = idempotency TTL s, ARGV[6] = event JSON, ARGV[7..] = field, value pairs.
# Returns {job id, 1} when created, {existing job id, 0} when the idempotency key was taken.
CREATE: Final = (
    _NOW
    + """
if ARGV[4] ~= '' then
  local existing = redis.call('GET', KEYS[5])
  if existing then return {existing, 0} end
  redis.call('SET', KEYS[5], ARGV[2], 'EX', tonumber(ARGV[5]))
end
local seq = redis.call('INCR', KEYS[4])
local score = (9 - tonumber(ARGV[3])) * 1099511627776 + seq
redis.call('HSET', KEYS[1], 'score', score, unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], score, ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('ZADD', KEYS[7], now, ARGV[2])
redis.call('SADD', ARGV[1] .. ':producers', KEYS[7])
redis.call('SADD', ARGV[1] .. ':state:queued', ARGV[2])
redis.call('RPUSH', KEYS[6], ARGV[6])
return {ARGV[2], 1}
"""
)

# KEYS[1] = job hash, KEYS[2] = due zset, KEYS[3] = events list.
# ARGV[1] = prefix, ARGV[2] = job id, ARGV[3] = allowed current states (',a,b,'),
# ARGV[4] = new state ('' = stay), ARGV[5] = step offset ms ('' = leave, '-' = clear),
# ARGV[6] = due offset ms, ARGV[7] = event JSON ('' = none), ARGV[8] = TTL s when terminal,
# ARGV[9] = field to increment ('' = none), ARGV[10] = events cap, ARGV[11..] = field, value
# pairs (an empty value deletes the field).
# Returns {1, previous state} on success, {0, current state or ''} when refused.
TRANSITION: Final = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or not string.find(ARGV[3], ',' .. state .. ',', 1, true) then
  return {0, state or ''}
end
for i = 11, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if ARGV[9] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[9], 1) end
if ARGV[5] == '-' then
  redis.call('HDEL', KEYS[1], 'step_until')
  redis.call('ZREM', KEYS[2], ARGV[2])
elseif ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'step_until', now + tonumber(ARGV[5]))
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[2])
end
if ARGV[4] ~= '' and ARGV[4] ~= state then
  redis.call('HSET', KEYS[1], 'state', ARGV[4])
  redis.call('SREM', ARGV[1] .. ':state:' .. state, ARGV[2])
  redis.call('SADD', ARGV[1] .. ':state:' .. ARGV[4], ARGV[2])
  if ARGV[8] ~= '' then
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[8]))
  end
end
if ARGV[7] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[7])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[10]), -1)
end
return {1, state}
"""
)

# A task claims its step before doing anything, so that of two copies of the same step (a
# redelivered message, a sweep re-send) only one runs; the other finds the step taken and exits.
# KEYS[1] = job hash, KEYS[2] = due zset.
# ARGV[1] = job id, ARGV[2] = allowed states (',a,b,'), ARGV[3] = lease ms (how long the step
# may take), ARGV[4] = due offset ms, ARGV[5] = tolerance ms (a step may start this early).
# Returns {1, state} when claimed, {0, state} for a wrong state, {-1, state} when not yet due.
CLAIM: Final = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or not string.find(ARGV[2], ',' .. state .. ',', 1, true) then
  return {0, state or ''}
end
local step_until = tonumber(redis.call('HGET', KEYS[1], 'step_until') or '0')
if now + tonumber(ARGV[5]) < step_until then return {-1, state} end
redis.call('HSET', KEYS[1], 'step_until', now + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
return {1, state}
"""
)

# Pops waiting jobs into free slots, round-robin over the provider's keys.
# KEYS[1] = waiting zset, KEYS[2] = due zset, KEYS[3..] = one gate zset per key.
# ARGV[1] = prefix, ARGV[2] = lease ms, ARGV[3] = due offset ms, ARGV[4] = number of keys,
# then per key: key id, cap. Returns a flat list {job id, key id, job id, key id, ...}.
# A waiting entry whose job is gone or no longer queued is dropped.
DISPATCH: Final = (
    _NOW
    + """
local n = tonumber(ARGV[4])
local free = {}
for i = 1, n do
  free[i] = tonumber(ARGV[4 + 2 * i]) - redis.call('ZCARD', KEYS[2 + i])
end
local out = {}
local progress = true
while progress do
  progress = false
  for i = 1, n do
    if free[i] > 0 then
      local popped = redis.call('ZPOPMIN', KEYS[1])
      if #popped == 0 then return out end
      local id = popped[1]
      local job = ARGV[1] .. ':job:' .. id
      if redis.call('HGET', job, 'state') == 'queued' then
        local key_id = ARGV[3 + 2 * i]
        redis.call('HSET', job, 'key_id', key_id, 'step_until', now)
        redis.call('ZADD', KEYS[2 + i], now + tonumber(ARGV[2]), id)
        redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
        free[i] = free[i] - 1
        out[#out + 1] = id
        out[#out + 1] = key_id
      end
      progress = true
    end
  end
end
return out
"""
)

# KEYS[1] = gate zset. ARGV[1] = job id, ARGV[2] = lease ms. Returns 1 if the lease was held.
RENEW: Final = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS[1] = gate zset. Returns the job ids whose lease expired before now.
EXPIRED: Final = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
"""
)

# KEYS[1] = due zset. ARGV[1] = grace ms, ARGV[2] = limit. Returns overdue job ids.
OVERDUE: Final = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0,
                  tonumber(ARGV[2]))
"""
)

# The sweep re-sends an overdue step only if it is *still* overdue and in the state it read:
# a step claimed since then is left to the task that claimed it.
# KEYS[1] = job hash, KEYS[2] = due zset, KEYS[3] = events list. ARGV[1] = job id,
# ARGV[2] = expected state, ARGV[3] = grace ms, ARGV[4] = event JSON, ARGV[5] = events cap.
# Returns 1 when the step was made claimable now (and due again after the grace), else 0.
RESEND: Final = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[2] then return 0 end
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or tonumber(due) > now - tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'step_until', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
return 1
"""
)

# Decides an expired lease atomically: a job the provider may still be working on (state in
# ARGV[4] or flagged at_provider — e.g. cancelled but still generating —, same key, before its
# deadline) keeps its slot; anything else gives it back.
# KEYS[1] = gate zset, KEYS[2] = job hash. ARGV[1] = job id, ARGV[2] = key id,
# ARGV[3] = lease ms, ARGV[4] = states at the provider (',a,b,').
# Returns 0 if the lease is not (or no longer) expired, 1 if renewed, 2 if released.
RECLAIM: Final = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return 0 end
local state = redis.call('HGET', KEYS[2], 'state')
local key_id = redis.call('HGET', KEYS[2], 'key_id')
local deadline = tonumber(redis.call('HGET', KEYS[2], 'deadline_ms') or '0') or 0
local working = redis.call('HGET', KEYS[2], 'at_provider') == '1'
  or (state and string.find(ARGV[4], ',' .. state .. ',', 1, true))
if working and key_id == ARGV[2] and (deadline == 0 or deadline > now) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 2
"""
)

# Drops from the indexes the ids of records that expired. Only ids created more than the
# record TTL ago can have expired, so the scan starts from the oldest and stops there.
# (Readers of the producer indexes skip ids whose record is gone.)
# KEYS[1] = all-jobs zset. ARGV[1] = prefix, ARGV[2] = TTL ms, ARGV[3] = limit,
# ARGV[4..] = every state name. Returns how many ids were dropped.
PRUNE: Final = (
    _NOW
    + """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0,
                       tonumber(ARGV[3]))
local dropped = 0
for _, id in ipairs(old) do
  if redis.call('EXISTS', ARGV[1] .. ':job:' .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    for i = 4, #ARGV do redis.call('SREM', ARGV[1] .. ':state:' .. ARGV[i], id) end
    dropped = dropped + 1
  end
end
-- Producer indexes cannot be told which ids expired; trim what is surely gone (a week past).
for _, index in ipairs(redis.call('SMEMBERS', ARGV[1] .. ':producers')) do
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ARGV[2]) - 604800000)
end
return dropped
"""
)
