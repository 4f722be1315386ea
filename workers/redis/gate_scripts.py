"""The Lua scripts behind the concurrency gate: dispatch with fair share, leases, AIMD caps.

Waiting jobs live in one zset per (provider, fair-share key) — the fair-share key is the job's
``tenant`` label, else its producer — scored priority-then-FIFO. A per-provider "fair" zset maps
each fair-share key to the score of its first waiting job, and a per-provider hash counts each
key's jobs in flight. Dispatch serves the highest priority first; within it, the fair-share key
with the fewest jobs in flight (max-min fairness); then FIFO. One producer with 10,000 queued
jobs cannot starve another with 10.
"""

from __future__ import annotations

from typing import Final

from workers.redis.keys import PRIORITY_STRIDE
from workers.redis.store_scripts import NOW

# Pops waiting jobs into free slots, round-robin over the provider's keys.
# KEYS[1] = fair zset, KEYS[2] = due zset, KEYS[3] = in-flight-by-fair-key hash,
# KEYS[4..] = one gate zset per API key.
# ARGV[1] = prefix, ARGV[2] = lease ms, ARGV[3] = due offset ms, ARGV[4] = provider,
# ARGV[5] = number of keys, then per key: key id, configured cap.
# A key's cap is lowered by its effective cap ({prefix}:cap:{provider}:{key}, AIMD) and is 0
# while the key cools down after a "concurrency too high" ({prefix}:cool:{provider}:{key}).
# Returns a flat list {job id, key id, ...}. Entries whose job is no longer queued are dropped.
DISPATCH: Final = (
    NOW
    + f"""
local STRIDE = {PRIORITY_STRIDE}
local base = ARGV[1] .. ':'
local n = tonumber(ARGV[5])
local free = {{}}
for i = 1, n do
  local key_id = ARGV[4 + 2 * i]
  local cap = tonumber(ARGV[5 + 2 * i])
  local eff = redis.call('GET', base .. 'cap:' .. ARGV[4] .. ':' .. key_id)
  if eff then cap = math.min(cap, math.max(1, math.floor(tonumber(eff)))) end
  if redis.call('EXISTS', base .. 'cool:' .. ARGV[4] .. ':' .. key_id) == 1 then cap = 0 end
  free[i] = cap - redis.call('ZCARD', KEYS[3 + i])
end

local function next_job()
  while true do
    local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if #top == 0 then return nil end
    local level = math.floor(tonumber(top[2]) / STRIDE)
    local limit = '(' .. string.format('%.0f', (level + 1) * STRIDE)
    local cands = redis.call('ZRANGEBYSCORE', KEYS[1], top[2], limit, 'WITHSCORES',
                             'LIMIT', 0, 256)
    local best, best_load, best_score
    for j = 1, #cands, 2 do
      local load = tonumber(redis.call('HGET', KEYS[3], cands[j]) or '0')
      local score = tonumber(cands[j + 1])
      if best == nil or load < best_load or (load == best_load and score < best_score) then
        best, best_load, best_score = cands[j], load, score
      end
    end
    local wait = base .. 'wait:' .. ARGV[4] .. ':' .. best
    local popped = redis.call('ZPOPMIN', wait)
    local head = redis.call('ZRANGE', wait, 0, 0, 'WITHSCORES')
    if #head == 0 then redis.call('ZREM', KEYS[1], best)
    else redis.call('ZADD', KEYS[1], head[2], best) end
    if #popped > 0 and redis.call('HGET', base .. 'job:' .. popped[1], 'state') == 'queued' then
      return popped[1], best
    end
  end
end

local out = {{}}
local progress = true
while progress do
  progress = false
  for i = 1, n do
    if free[i] > 0 then
      local id, fair = next_job()
      if not id then return out end
      local key_id = ARGV[4 + 2 * i]
      redis.call('HSET', base .. 'job:' .. id, 'key_id', key_id, 'step_until', now, 'sent', now)
      redis.call('ZADD', KEYS[3 + i], now + tonumber(ARGV[2]), id)
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
      redis.call('HINCRBY', KEYS[3], fair, 1)
      free[i] = free[i] - 1
      out[#out + 1] = id
      out[#out + 1] = key_id
      progress = true
    end
  end
end
return out
"""
)

# Frees a slot. KEYS[1] = gate zset, KEYS[2] = job hash, KEYS[3] = in-flight-by-fair hash.
# ARGV[1] = job id. Returns 1 if the job held the slot.
_RELEASE_BODY: Final = """
local function release(gate, job, inflight, id)
  if redis.call('ZREM', gate, id) == 0 then return 0 end
  local fair = redis.call('HGET', job, 'fair')
  if fair and tonumber(redis.call('HINCRBY', inflight, fair, -1)) <= 0 then
    redis.call('HDEL', inflight, fair)
  end
  return 1
end
"""
RELEASE: Final = _RELEASE_BODY + "return release(KEYS[1], KEYS[2], KEYS[3], ARGV[1])\n"

# KEYS[1] = gate zset. ARGV[1] = job id, ARGV[2] = lease ms. Returns 1 if the lease was held.
RENEW: Final = (
    NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS[1] = gate zset. Returns the job ids whose lease expired before now.
EXPIRED: Final = (
    NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
"""
)

# Decides an expired lease atomically: a job the provider may still be working on (state in
# ARGV[4] or flagged at_provider — e.g. cancelled but still generating —, same key, before its
# deadline) keeps its slot; anything else gives it back.
# KEYS[1] = gate zset, KEYS[2] = job hash, KEYS[3] = in-flight-by-fair hash.
# ARGV[1] = job id, ARGV[2] = key id, ARGV[3] = lease ms, ARGV[4] = states at the provider.
# Returns 0 if the lease is not (or no longer) expired, 1 if renewed, 2 if released.
RECLAIM: Final = (
    NOW
    + _RELEASE_BODY
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
release(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 2
"""
)

# Puts a job back at the front of its fair-share queue (it keeps its original score).
# KEYS[1] = the job's waiting zset, KEYS[2] = fair zset. ARGV[1] = job id, ARGV[2] = score,
# ARGV[3] = fair-share key.
REQUEUE: Final = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], head[2], ARGV[3])
return 1
"""

# Multiplicative decrease of a key's effective cap after the provider said "concurrency too
# high" below the configured cap, and a cool-down during which the key takes no new job.
# KEYS[1] = effective cap, KEYS[2] = cool-down flag. ARGV[1] = configured cap, ARGV[2] = beta,
# ARGV[3] = cool-down ms, ARGV[4] = how long a lowered cap is remembered (s).
# Returns the new effective cap.
SHRINK: Final = """
local eff = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
eff = math.max(1, eff * tonumber(ARGV[2]))
redis.call('SET', KEYS[1], eff, 'EX', tonumber(ARGV[4]))
redis.call('SET', KEYS[2], 1, 'PX', tonumber(ARGV[3]))
return tostring(eff)
"""

# Additive increase: each accepted submit raises a lowered cap by 1/cap (about +1 per round of
# cap submits), and forgets it once back at the configured cap.
# KEYS[1] = effective cap. ARGV[1] = configured cap, ARGV[2] = TTL s. Returns the new value.
GROW: Final = """
local eff = redis.call('GET', KEYS[1])
if not eff then return ARGV[1] end
eff = tonumber(eff)
eff = eff + 1 / eff
if eff >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return ARGV[1]
end
redis.call('SET', KEYS[1], eff, 'EX', tonumber(ARGV[2]))
return tostring(eff)
"""
