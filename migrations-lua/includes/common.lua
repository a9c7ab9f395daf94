--[[
includes/common.lua: the envelope every script shares, its schema guard, the key layout, and the
helpers the scripts share. The build puts this file in front of every script
(src/store/scripts/mod.rs), as BullMQ's includes do, so each script stays one atomic EVALSHA and
all of this is written once.

The envelope: the first KEYS and ARGV of every script, in this order (src/store/scripts/mod.rs
builds them; a script's own KEYS start at KEYS[2], its own ARGV at ARGV[5]).

KEYS[1]  schema_key      (string: the key-schema version of the deployment; see init.lua)
ARGV[1]  base            key base, e.g. "{shardman}:"; every key starts with it, so all of a
                         deployment's keys share one hash tag
ARGV[2]  known_schema    key-schema version this replica knows (integer), or "" for a read-only
                         script, which the guard lets through (/status of an outdated replica)
ARGV[3]  events_enabled  1 to queue events for the webhook, 0 not to
ARGV[4]  lease_ms        lease length in milliseconds (MAX_SECONDS * 1000)

The key layout (README, "How a claim works in Redis"): deployment keys are base .. name (KEYS
passes the fixed ones); per-generation keys are built by gen_key below and nowhere else:
  g:<gen>:next       string      high-water mark: ids at or above it were never handed out
  g:<gen>:free       sorted set  released or expired ids below `next` (score = id)
  g:<gen>:deadlines  sorted set  held ids (score = a lower bound of the lease deadline, ms of Redis
                                 time; reclaim_expired checks the lease's TTL)
  g:<gen>:ready      set         ids of the pending generation whose holder has beaten
  g:<gen>:lease:<id> hash, PX    the lease: n = session nonce, f = fencing token, w = its IDENTIFY
                                 slot (ms), t = last beat (ms), b = 1 once beaten while ready, r = 1
                                 once the holder stored resume data; and the figures the holder
                                 reports, under the fields beat.lua's header names
  g:<gen>:resume:<id> string, PX the last holder's resume JSON
  g:<gen>:reports    hash        each shard's last reported guild count and latency (g:<id>,
                                 l:<id>), kept beyond its lease for the next holder (beat.lua)
  g:<gen>:moving     sorted set  ids marked to move (SHARDS_PER_PROCESS=auto), score = ms marked
  g:<gen>:reserved   sorted set  ids handed over for a move, score = ms the reservation lapses
  g:<gen>:reserved_for hash      those ids -> the label of the process they move to
  lock:<name>        string, PX  a job lock (lock.lua)
  events             list        alert events, newest first (queue_event below)
  events:seq         string      the last event id
  events:inflight    sorted set  claimed events awaiting delivery (claim_events.lua)
  load:history       sorted set  the fleet's load over the last hour (record_load.lua)
  waiters            sorted set  tickets of the claims that wait (GET /connect?wait=), score = the
                                 arrival number (waiters:seq): the queue, first come first served
  waiters:renewed    sorted set  the same tickets, score = the ms by which each must be renewed
                                 (by its next attempt) or be dropped: its replica stopped asking
  waiters:seq        string      the last arrival number
  waiters:process    hash        the same tickets -> the process label of their claim (placement
                                 gives waiting processes shards, src/jobs/placement.rs)

Errors   "SCHEMA_TOO_NEW <found>" from every script when a newer build raised the stored schema
         above known_schema: nothing is read or written, the replica must not touch the data.
]]
local schema_key = KEYS[1]
local base = ARGV[1]
local known_schema = tonumber(ARGV[2])
local events_enabled = ARGV[3] == '1'
local lease_ms = tonumber(ARGV[4])

-- The schema guard, once for every script (a top-level return ends the whole script).
local stored_schema = tonumber(redis.call('GET', schema_key))
if known_schema and stored_schema and stored_schema > known_schema then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. stored_schema)
end

-- A deployment-level key derived from the base (same hash tag as KEYS).
local function key(name)
  return base .. name
end

-- A per-generation key: gen_key(7, 'free') is "<base>g:7:free", gen_key(7, 'lease', 3) is
-- "<base>g:7:lease:3".
local function gen_key(generation, name, id)
  if id == nil then
    return base .. 'g:' .. generation .. ':' .. name
  end
  return base .. 'g:' .. generation .. ':' .. name .. ':' .. id
end

-- Redis time in milliseconds: the one clock all replicas share.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Events for the webhook dispatcher: "id|kind|shard_id|generation|max_shards|at_ms" (-1 = none),
-- newest first, capped so an unread queue cannot grow without bound. The id (a counter at
-- events:seq) lets a webhook receiver drop the duplicate an at-least-once redelivery may bring
-- (claim_events.lua).
local EVENTS_KEPT = 10000
local function queue_event(events_key, kind, shard_id, generation, max_shards, at_ms)
  if events_enabled then
    local id = redis.call('INCR', key('events:seq'))
    redis.call('LPUSH', events_key, table.concat({id, kind, shard_id, generation, max_shards, at_ms}, '|'))
    redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
  end
end

-- Moves (SHARDS_PER_PROCESS=auto; README "Scaling on load"): the placement job marks a shard to
-- move (mark_moves.lua: lease field v = "<ms marked> <label of the process it moves to>", and
-- `moving`); its holder's beats say so (beat.lua); when the holder hands it over (disconnect.lua),
-- the shard is reserved for that process instead of freed, until it claims it (connect.lua) or
-- MOVE_RESERVE_MS pass, when it is freed for anyone.
local MOVE_RESERVE_MS = 15000

-- Reserves `id` of `generation` for the process `label` (see above).
local function reserve_for_move(generation, id, label, at_ms)
  redis.call('ZADD', gen_key(generation, 'reserved'), at_ms + MOVE_RESERVE_MS, id)
  redis.call('HSET', gen_key(generation, 'reserved_for'), id, label)
end

-- Frees the reservations that lapsed: the process they were for never came for them.
local function release_lapsed_reservations(generation, at_ms)
  local reserved_key = gen_key(generation, 'reserved')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', reserved_key, '-inf', at_ms)) do
    redis.call('ZREM', reserved_key, id)
    redis.call('HDEL', gen_key(generation, 'reserved_for'), id)
    redis.call('ZADD', gen_key(generation, 'free'), id, id)
  end
end

-- Takes a shard reserved for `label`, if there is one: its id, else nil. Cost: O(R) for R
-- reservations, which the placement job keeps to a handful.
local function take_reservation(generation, label)
  if label == '' then
    return nil
  end
  local reserved_for_key = gen_key(generation, 'reserved_for')
  local reserved = redis.call('HGETALL', reserved_for_key)
  for index = 1, #reserved, 2 do
    if reserved[index + 1] == label then
      redis.call('HDEL', reserved_for_key, reserved[index])
      redis.call('ZREM', gen_key(generation, 'reserved'), reserved[index])
      return tonumber(reserved[index])
    end
  end
  return nil
end

-- Moves a generation's expired leases to its free set: ids whose deadline passed and whose lease
-- key is gone. The lease key is the truth: if it is still there (a beat refreshed its TTL after
-- the deadline was written), the id stays held and its deadline is fixed. Calls on_expired(id)
-- once per freed id (an id leaves `deadlines` exactly once) and returns how many were freed.
-- Cost: O(log N) per expired lease.
local function reclaim_expired(generation, at_ms, on_expired)
  release_lapsed_reservations(generation, at_ms)
  local deadlines_key = gen_key(generation, 'deadlines')
  local freed = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines_key, '-inf', at_ms)) do
    local ttl = redis.call('PTTL', gen_key(generation, 'lease', id))
    if ttl > 0 then
      redis.call('ZADD', deadlines_key, at_ms + ttl, id)
    else
      redis.call('ZREM', deadlines_key, id)
      redis.call('ZADD', gen_key(generation, 'free'), id, id)
      redis.call('SREM', gen_key(generation, 'ready'), id)
      freed = freed + 1
      on_expired(id)
    end
  end
  return freed
end

-- Discord's daily identify budget (`gateway` hash: total, remaining, used, reset_at). When it is
-- known and `count` identifies would take it below the reserve (reserve_setting, or 5% of the
-- total when it is < 0), returns {ms until Discord's reset, true the first time it ran low}.
-- Otherwise counts them against it and returns nil.
local function spend_identify(gateway_key, reserve_setting, at_ms, count)
  local budget = redis.call('HMGET', gateway_key, 'total', 'remaining', 'used', 'reset_at')
  if not budget[1] or at_ms >= tonumber(budget[4]) then
    return nil -- unknown, or Discord has reset it since it was read
  end
  local left = tonumber(budget[2]) - (tonumber(budget[3]) or 0)
  local reserve = reserve_setting
  if reserve < 0 then
    reserve = math.ceil(tonumber(budget[1]) * 0.05)
  end
  if left - count < reserve then
    local first_time = redis.call('HSETNX', gateway_key, 'low_alerted', 1) == 1
    return {tonumber(budget[4]) - at_ms, first_time}
  end
  redis.call('HINCRBY', gateway_key, 'used', count)
  return nil
end

-- The shard group of `shard_id` under group_size K: its first id and its size (the last group of
-- a generation may be shorter). See connect.lua.
local function group_of(shard_id, group_size, max_shards)
  local first = shard_id - shard_id % group_size
  return first, math.min(group_size, max_shards - first)
end

-- Books the next IDENTIFY slot of the shard's bucket (shard_id % max_concurrency; Discord's
-- max_concurrency from `gateway` when known) and returns how long to wait for it, in ms.
-- Discord allows one IDENTIFY per 5 s per bucket; `identify` holds each bucket's next free slot.
-- Slots are IDENTIFY_INTERVAL_MS (6 s) apart: a bot's IDENTIFY reaches Discord some time after
-- its slot (its answer's network delay, then the library's start-up, socket and HELLO), and one
-- that comes late shortens the gap to the next bot's punctual one. Measured with discord.py,
-- discord.js and twilight on a loaded machine: up to about 0.5 s late (tests/clients); the margin
-- of a second keeps IDENTIFYs 5 s apart at Discord all the same.
local IDENTIFY_INTERVAL_MS = 6000
local function book_identify_slot(gateway_key, identify_key, default_concurrency, shard_id, at_ms)
  local concurrency = tonumber(redis.call('HGET', gateway_key, 'max_concurrency')) or default_concurrency
  local bucket = shard_id % concurrency
  local slot = math.max(at_ms, tonumber(redis.call('HGET', identify_key, bucket)) or 0)
  redis.call('HSET', identify_key, bucket, slot + IDENTIFY_INTERVAL_MS)
  return slot - at_ms
end

-- The queue of claims that wait (connect.lua): how many claims are queued ahead of `ticket`, after
-- dropping the tickets whose renewal lapsed. A ticket joins at its first attempt, at the tail, and
-- each attempt renews it for renew_ms; "" (a claim that does not wait) is behind every queued one.
-- Cost: O(log W) for W waiters, plus O(log W) per dropped ticket.
local function claims_ahead(ticket, process_label, renew_ms, at_ms)
  local queue_key = key('waiters')
  local renewals_key = key('waiters:renewed')
  for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', renewals_key, '-inf', at_ms)) do
    redis.call('ZREM', queue_key, lapsed)
    redis.call('ZREM', renewals_key, lapsed)
    redis.call('HDEL', key('waiters:process'), lapsed)
  end
  if ticket == '' then
    return redis.call('ZCARD', queue_key)
  end
  redis.call('ZADD', renewals_key, at_ms + renew_ms, ticket)
  local rank = redis.call('ZRANK', queue_key, ticket)
  if rank then
    return rank
  end
  redis.call('ZADD', queue_key, redis.call('INCR', key('waiters:seq')), ticket)
  if process_label ~= '' then
    redis.call('HSET', key('waiters:process'), ticket, process_label)
  end
  return redis.call('ZCARD', queue_key) - 1
end

-- Takes `ticket` out of the queue of claims that wait (granted, or its wait ended).
local function leave_waiters(ticket)
  redis.call('ZREM', key('waiters'), ticket)
  redis.call('ZREM', key('waiters:renewed'), ticket)
  redis.call('HDEL', key('waiters:process'), ticket)
end
