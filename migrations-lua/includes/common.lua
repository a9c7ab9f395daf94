--[[
includes/common.lua: helpers shared by the scripts. The build puts this file in front of every
script (src/store/mod.rs), as BullMQ's includes do, so each script stays one atomic EVALSHA and
the shared logic is written once. Only local functions and constants: it touches no key itself.
]]

-- Redis time in milliseconds: the one clock all replicas share.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The stored key-schema version when a newer shardman raised it above `known_version` (then this
-- replica's build must not write), else nil. See init.lua.
local function newer_schema(schema_key, known_version)
  local stored = tonumber(redis.call('GET', schema_key)) or 0
  if stored > known_version then
    return stored
  end
  return nil
end

-- Events for the webhook dispatcher: "kind|shard_id|generation|max_shards|at_ms" (-1 = none),
-- newest first, capped so an unread queue cannot grow without bound.
local EVENTS_KEPT = 10000
local function queue_event(events_key, enabled, kind, shard_id, generation, max_shards, at_ms)
  if enabled then
    redis.call('LPUSH', events_key, table.concat({kind, shard_id, generation, max_shards, at_ms}, '|'))
    redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
  end
end

-- Moves a generation's expired leases to its free set: ids whose deadline passed and whose lease
-- key is gone. The lease key is the truth: if it is still there (a beat refreshed its TTL after
-- the deadline was written), the id stays held and its deadline is fixed. Calls on_expired(id)
-- once per freed id (an id leaves `deadlines` exactly once) and returns how many were freed.
-- Cost: O(log N) per expired lease.
local function reclaim_expired(gen_base, at_ms, on_expired)
  local deadlines_key = gen_base .. 'deadlines'
  local freed = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines_key, '-inf', at_ms)) do
    local ttl = redis.call('PTTL', gen_base .. 'lease:' .. id)
    if ttl > 0 then
      redis.call('ZADD', deadlines_key, at_ms + ttl, id)
    else
      redis.call('ZREM', deadlines_key, id)
      redis.call('ZADD', gen_base .. 'free', id, id)
      redis.call('SREM', gen_base .. 'ready', id)
      freed = freed + 1
      on_expired(id)
    end
  end
  return freed
end

-- Discord's daily identify budget (`gateway` hash: total, remaining, used, reset_at). When it is
-- known and down to the reserve (reserve_setting, or 5% of the total when it is < 0), returns
-- {ms until Discord's reset, true the first time it ran low}. Otherwise counts one identify
-- against it and returns nil.
local function spend_identify(gateway_key, reserve_setting, at_ms)
  local budget = redis.call('HMGET', gateway_key, 'total', 'remaining', 'used', 'reset_at')
  if not budget[1] or at_ms >= tonumber(budget[4]) then
    return nil -- unknown, or Discord has reset it since it was read
  end
  local left = tonumber(budget[2]) - (tonumber(budget[3]) or 0)
  local reserve = reserve_setting
  if reserve < 0 then
    reserve = math.ceil(tonumber(budget[1]) * 0.05)
  end
  if left <= reserve then
    local first_time = redis.call('HSETNX', gateway_key, 'low_alerted', 1) == 1
    return {tonumber(budget[4]) - at_ms, first_time}
  end
  redis.call('HINCRBY', gateway_key, 'used', 1)
  return nil
end

-- Books the next IDENTIFY slot of the shard's bucket (shard_id % max_concurrency; Discord's
-- max_concurrency from `gateway` when known) and returns how long to wait for it, in ms.
-- Discord allows one IDENTIFY per 5 s per bucket; `identify` holds each bucket's next free slot.
-- Slots are 5.25 s apart: two bots of a bucket get their answers with different network delays,
-- and the margin keeps their IDENTIFYs 5 s apart at Discord all the same.
local IDENTIFY_INTERVAL_MS = 5250
local function book_identify_slot(gateway_key, identify_key, default_concurrency, shard_id, at_ms)
  local concurrency = tonumber(redis.call('HGET', gateway_key, 'max_concurrency')) or default_concurrency
  local bucket = shard_id % concurrency
  local slot = math.max(at_ms, tonumber(redis.call('HGET', identify_key, bucket)) or 0)
  redis.call('HSET', identify_key, bucket, slot + IDENTIFY_INTERVAL_MS)
  return slot - at_ms
end
