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

from workers.redis.store_scripts import NOW

# Pops waiting jobs into free slots, round-robin over the provider's keys.
# KEYS[1] = fair zset, KEYS[2] = due zset, KEYS[3] = in-flight-by-fair-key hash, then three
# per API key: its gate zset, its effective cap (AIMD: lowers the configured cap), its
# cool-down flag (set after a "concurrency too high": the key takes no job meanwhile).
# ARGV[1] = lease ms, ARGV[2] = due offset ms, ARGV[3] = priority stride
# (keys.PRIORITY_STRIDE), ARGV[4] = job-hash prefix (keys.job_prefix()), ARGV[5] = waiting-zset
# prefix (keys.waiting_prefix(provider)) — the job ids and fair-share keys are found here —,
# then per API key, in KEYS order: its key id, its configured cap.
# Returns a flat list {job id, key id, ...}. Entries whose job is no longer queued are dropped.
DISPATCH: Final = (
    NOW
    + """
local fair_queue, due_key, in_flight = KEYS[1], KEYS[2], KEYS[3]
local lease, due, stride = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local job_prefix, waiting_prefix = ARGV[4], ARGV[5]
local n = (#ARGV - 5) / 2
local gates, key_ids, free = {}, {}, {}
for i = 1, n do
  local gate, cap_key, cool_key = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local cap = tonumber(ARGV[5 + 2 * i])
  local eff = redis.call('GET', cap_key)
  if eff then cap = math.min(cap, math.max(1, math.floor(tonumber(eff)))) end
  if redis.call('EXISTS', cool_key) == 1 then cap = 0 end
  gates[i], key_ids[i], free[i] = gate, ARGV[4 + 2 * i], cap - redis.call('ZCARD', gate)
end

local function next_job()
  while true do
    local top = redis.call('ZRANGE', fair_queue, 0, 0, 'WITHSCORES')
    if #top == 0 then return nil end
    local level = math.floor(tonumber(top[2]) / stride)
    local limit = '(' .. string.format('%.0f', (level + 1) * stride)
    local cands = redis.call('ZRANGEBYSCORE', fair_queue, top[2], limit, 'WITHSCORES',
                             'LIMIT', 0, 256)
    local best, best_load, best_score
    for j = 1, #cands, 2 do
      local load = tonumber(redis.call('HGET', in_flight, cands[j]) or '0')
      local score = tonumber(cands[j + 1])
      if best == nil or load < best_load or (load == best_load and score < best_score) then
        best, best_load, best_score = cands[j], load, score
      end
    end
    local waiting = waiting_prefix .. best
    local popped = redis.call('ZPOPMIN', waiting)
    local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
    if #head == 0 then redis.call('ZREM', fair_queue, best)
    else redis.call('ZADD', fair_queue, head[2], best) end
    if #popped > 0 and redis.call('HGET', job_prefix .. popped[1], 'state') == 'queued' then
      return popped[1], best
    end
  end
end

local out = {}
local progress = true
while progress do
  progress = false
  for i = 1, n do
    if free[i] > 0 then
      local id, fair = next_job()
      if not id then return out end
      redis.call('HSET', job_prefix .. id, 'key_id', key_ids[i], 'step_until', now, 'sent', now)
      redis.call('ZADD', gates[i], now + lease, id)
      redis.call('ZADD', due_key, now + due, id)
      redis.call('HINCRBY', in_flight, fair, 1)
      free[i] = free[i] - 1
      out[#out + 1] = id
      out[#out + 1] = key_ids[i]
      progress = true
    end
  end
end
return out
"""
)

# The release RELEASE and RECLAIM share: the job's lease leaves the gate zset, and its
# fair-share key (the job hash's 'fair') counts one job fewer in flight.
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

# Frees a slot. KEYS[1] = gate zset, KEYS[2] = job hash, KEYS[3] = in-flight-by-fair hash.
# ARGV[1] = job id. Returns 1 if the job held the slot.
RELEASE: Final = (
    _RELEASE_BODY
    + """
local gate_key, job_key, in_flight = KEYS[1], KEYS[2], KEYS[3]
local job_id = ARGV[1]
return release(gate_key, job_key, in_flight, job_id)
"""
)

# KEYS[1] = gate zset. ARGV[1] = job id, ARGV[2] = lease ms. Returns 1 if the lease was held.
RENEW: Final = (
    NOW
    + """
local gate_key = KEYS[1]
local job_id, lease = ARGV[1], tonumber(ARGV[2])
if not redis.call('ZSCORE', gate_key, job_id) then return 0 end
redis.call('ZADD', gate_key, now + lease, job_id)
return 1
"""
)

# KEYS[1] = gate zset. No ARGV. Returns the job ids whose lease expired before now.
EXPIRED: Final = (
    NOW
    + """
local gate_key = KEYS[1]
return redis.call('ZRANGEBYSCORE', gate_key, '-inf', now)
"""
)

# Decides an expired lease atomically: a job the provider may still be working on (state in
# ARGV[4] or flagged at_provider — e.g. cancelled but still generating —, same key, before its
# deadline) keeps its slot; anything else gives it back. A job in the held state (ARGV[5]:
# submit_unknown, whose task the provider may or may not have) with a 'hold_until_ms' keeps
# its slot only until then: past it the slot is released and counted (KEYS[4]); before it
# the lease is renewed up to the hold's end at most, so the next sweep after it decides.
# KEYS[1] = gate zset, KEYS[2] = job hash, KEYS[3] = in-flight-by-fair hash, KEYS[4] = the
# provider's count of such held-over releases.
# ARGV[1] = job id, ARGV[2] = key id, ARGV[3] = lease ms, ARGV[4] = states at the provider
# (',a,b,'), ARGV[5] = the held state. Returns 0 if the lease is not (or no longer) expired,
# 1 if renewed, 2 if released, 3 if released because the job's hold ran out.
RECLAIM: Final = (
    NOW
    + _RELEASE_BODY
    + """
local gate_key, job_key, in_flight, held_over = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, key_id, lease, working_states = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local held_state = ARGV[5]
local score = redis.call('ZSCORE', gate_key, job_id)
if not score or tonumber(score) > now then return 0 end
local state = redis.call('HGET', job_key, 'state')
local holder = redis.call('HGET', job_key, 'key_id')
local deadline = tonumber(redis.call('HGET', job_key, 'deadline_ms') or '0') or 0
local hold = 0
if state == held_state then
  hold = tonumber(redis.call('HGET', job_key, 'hold_until_ms') or '0') or 0
end
if hold > 0 and hold <= now and holder == key_id then
  release(gate_key, job_key, in_flight, job_id)
  redis.call('INCR', held_over)
  return 3
end
local working = redis.call('HGET', job_key, 'at_provider') == '1'
  or (state and string.find(working_states, ',' .. state .. ',', 1, true))
if working and holder == key_id and (deadline == 0 or deadline > now) then
  local expiry = now + lease
  if hold > 0 then expiry = math.min(expiry, hold) end
  redis.call('ZADD', gate_key, expiry, job_id)
  return 1
end
release(gate_key, job_key, in_flight, job_id)
return 2
"""
)

# Puts a job back at the front of its fair-share queue (it keeps its original score).
# KEYS[1] = the job's waiting zset, KEYS[2] = fair zset. ARGV[1] = job id, ARGV[2] = score,
# ARGV[3] = fair-share key.
REQUEUE: Final = """
local waiting, fair_queue = KEYS[1], KEYS[2]
local job_id, score, fair = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZADD', waiting, score, job_id)
local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
redis.call('ZADD', fair_queue, head[2], fair)
return 1
"""

# Multiplicative decrease of a key's effective cap after the provider said "concurrency too
# high" below the configured cap, and a cool-down during which the key takes no new job.
# KEYS[1] = effective cap, KEYS[2] = cool-down flag. ARGV[1] = configured cap, ARGV[2] = beta,
# ARGV[3] = cool-down ms, ARGV[4] = how long a lowered cap is remembered (s).
# Returns the new effective cap.
SHRINK: Final = """
local cap_key, cool_key = KEYS[1], KEYS[2]
local configured, beta = ARGV[1], tonumber(ARGV[2])
local cool_ms, remember_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local eff = tonumber(redis.call('GET', cap_key) or configured)
eff = math.max(1, eff * beta)
redis.call('SET', cap_key, eff, 'EX', remember_s)
redis.call('SET', cool_key, 1, 'PX', cool_ms)
return tostring(eff)
"""

# Additive increase: each accepted submit raises a lowered cap by 1/cap (about +1 per round of
# cap submits), and forgets it once back at the configured cap.
# KEYS[1] = effective cap. ARGV[1] = configured cap, ARGV[2] = TTL s. Returns the new value.
GROW: Final = """
local cap_key = KEYS[1]
local configured, remember_s = ARGV[1], tonumber(ARGV[2])
local eff = redis.call('GET', cap_key)
if not eff then return configured end
eff = tonumber(eff)
eff = eff + 1 / eff
if eff >= tonumber(configured) then
  redis.call('DEL', cap_key)
  return configured
end
redis.call('SET', cap_key, eff, 'EX', remember_s)
return tostring(eff)
"""
