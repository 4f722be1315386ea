"""The Lua scripts behind the job store (the gate's are in ``workers.gate_lua``).

Each script runs atomically in Redis and reads the clock with Redis ``TIME``, so every worker
agrees on "now" whatever its own clock says. Job, state-index and event keys are derived inside
the scripts from the prefix (ARGV), which is fine on one Redis (or Sentinel) — Celery's Redis
broker does not support Redis Cluster anyway.
"""

from __future__ import annotations

from typing import Final

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] = job hash, KEYS[2] = the waiting zset of the job's provider and fair-share key,
# KEYS[3] = all-jobs zset, KEYS[4] = sequence, KEYS[5] = idempotency key (may be an unused name
# when ARGV[4] == ''), KEYS[6] = events list, KEYS[7] = the producer's jobs zset,
# KEYS[8] = the provider's fair zset (fair-share key → score of its first waiting job).
# The fields must include 'fair' (the fair-share key).
# ARGV[1] = prefix, ARGV[2] = job id, ARGV[3] = priority, ARGV[4] = idempotency key or '',
# ARGV[5] = idempotency TTL s, ARGV[6] = event JSON, ARGV[7..] = field, value pairs.
# Returns {job id, 1} when created, {existing job id, 0} when the idempotency key was taken.
CREATE: Final = (
    NOW
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
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[8], head[2], redis.call('HGET', KEYS[1], 'fair'))
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
    NOW
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
# Returns {1, state, field, value, ...} when claimed (the job's hash after the claim, saving a
# round trip), {0, state} for a wrong state, {-1, state} when not yet due.
CLAIM: Final = (
    NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or not string.find(ARGV[2], ',' .. state .. ',', 1, true) then
  return {0, state or ''}
end
local step_until = tonumber(redis.call('HGET', KEYS[1], 'step_until') or '0')
if now + tonumber(ARGV[5]) < step_until then return {-1, state} end
redis.call('HSET', KEYS[1], 'step_until', now + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
local out = {1, state}
for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = item end
return out
"""
)

# KEYS[1] = due zset. ARGV[1] = grace ms, ARGV[2] = limit. Returns overdue job ids.
OVERDUE: Final = (
    NOW
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
    NOW
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

# Drops from the indexes the ids of records that expired. Only ids created more than the
# record TTL ago can have expired, so the scan starts from the oldest and stops there.
# (Readers of the producer indexes skip ids whose record is gone.)
# KEYS[1] = all-jobs zset. ARGV[1] = prefix, ARGV[2] = TTL ms, ARGV[3] = limit,
# ARGV[4..] = every state name. Returns how many ids were dropped.
PRUNE: Final = (
    NOW
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
