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
                                 reports, under the fields beat.lua's header names; s (s:<id>) =
                                 "<ms its counter stood still since> <ms last told>" of a silent
                                 shard, q = the silent shard ids to tell (mark_silent.lua)
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
  draining           sorted set  process labels being drained (drain.lua), score = the ms the mark
                                 lapses: no shard is given to them, placement moves theirs away
  identify           hash        bucket -> ms from which the bucket's next IDENTIFY may start
                                 (slots and permits, see "IDENTIFY pacing" below)
  identify:permits   hash        bucket -> its outstanding (granted, unconfirmed) permit,
                                 "<session nonce>:<shard id>:<the identify value its grant wrote>"

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

-- Whether process `label` is being drained (drain.lua) at `at_ms`. Cost: O(1).
local function is_draining(label, at_ms)
  if label == '' then
    return false
  end
  local deadline = tonumber(redis.call('ZSCORE', key('draining'), label))
  return deadline ~= nil and deadline > at_ms
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
-- total when it is < 0), returns {ms until Discord's reset, true the first time it ran low};
-- false when they fit; nil when the budget is unknown (or Discord has reset it since it was read).
-- Counts nothing.
local function identify_budget_short(gateway_key, reserve_setting, at_ms, count)
  local budget = redis.call('HMGET', gateway_key, 'total', 'remaining', 'used', 'reset_at')
  if not budget[1] or at_ms >= tonumber(budget[4]) then
    return nil
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
  return false
end

-- Spends `count` identifies of the daily budget: returns identify_budget_short's {ms until the
-- reset, first time} when they would take it below the reserve (nothing spent), else counts them
-- against it (when it is known) and returns nil.
local function spend_identify(gateway_key, reserve_setting, at_ms, count)
  local short = identify_budget_short(gateway_key, reserve_setting, at_ms, count)
  if short == false then
    redis.call('HINCRBY', gateway_key, 'used', count)
    return nil
  end
  return short
end

-- The shard group of `shard_id` under group_size K: its first id and its size (the last group of
-- a generation may be shorter). See connect.lua.
local function group_of(shard_id, group_size, max_shards)
  local first = shard_id - shard_id % group_size
  return first, math.min(group_size, max_shards - first)
end

-- IDENTIFY pacing. Discord allows one IDENTIFY per 5 s per bucket (shard_id % max_concurrency;
-- Discord's max_concurrency from `gateway` when known). `identify` holds, per bucket, the ms of
-- Redis time from which the bucket's next IDENTIFY may start. Two kinds of clients move it, and
-- may share a fleet (and a bucket), because both read and write this one value:
--   * slots (connect.lua, identify.lua): booked before the process has even opened its socket,
--     IDENTIFY_INTERVAL_MS apart (book_identify_slot);
--   * permits (identify_permit.lua, identify_confirm.lua): asked for right before the IDENTIFY and
--     granted only once the bucket is open, then confirmed once the IDENTIFY was sent
--     (grant_identify_permit, confirm_identify_permit). `identify:permits` keeps each bucket's
--     outstanding permit as "<session nonce>:<shard id>:<bucket value the grant wrote>".
local function identify_bucket(gateway_key, default_concurrency, shard_id)
  local concurrency = tonumber(redis.call('HGET', gateway_key, 'max_concurrency')) or default_concurrency
  return shard_id % concurrency
end

-- A slot's spacing: a bot's IDENTIFY reaches Discord some time after its slot (its answer's
-- network delay, then the library's start-up, socket and HELLO), and one that comes late shortens
-- the gap to the next bot's punctual one. Measured with discord.py, discord.js and twilight on a
-- loaded machine: up to about 0.5 s late (tests/clients); the margin of a second keeps IDENTIFYs
-- 5 s apart at Discord all the same.
local IDENTIFY_INTERVAL_MS = 6000
-- A confirmed permit's spacing: the next IDENTIFY may start this long after the confirm of the
-- previous one arrived. Discord's 5 s and no margin: a confirm is sent on READY, after Discord had
-- the IDENTIFY, so the next one reaches Discord more than 5 s after it (README "When to IDENTIFY").
local CONFIRMED_GAP_MS = 5000
-- How long a granted permit holds its bucket until it is confirmed: a holder that never confirms
-- (it crashed, or Discord answered op 9 and it must ask again) frees the bucket after at most
-- this. A permit is used at once, so its IDENTIFY leaves well within the first 3.1 s of it.
local UNCONFIRMED_HOLD_MS = 8100

-- Books the next IDENTIFY slot of the shard's bucket and returns how long to wait for it, in ms.
local function book_identify_slot(gateway_key, identify_key, default_concurrency, shard_id, at_ms)
  local bucket = identify_bucket(gateway_key, default_concurrency, shard_id)
  local slot = math.max(at_ms, tonumber(redis.call('HGET', identify_key, bucket)) or 0)
  redis.call('HSET', identify_key, bucket, slot + IDENTIFY_INTERVAL_MS)
  return slot - at_ms
end

-- The bucket's outstanding permit: nonce, shard id (a number) and the bucket value its grant wrote
-- (a number), or nil when there is none.
local function outstanding_permit(permits_key, bucket)
  local permit = redis.call('HGET', permits_key, bucket)
  if not permit then
    return nil
  end
  local holder, shard, written = string.match(permit, '^([^:]*):(%d+):(%d+)$')
  return holder, tonumber(shard), tonumber(written)
end

-- Grants the permit of the shard's bucket to session `nonce` when the bucket is open (at_ms at or
-- after its value): holds it UNCONFIRMED_HOLD_MS and remembers the permit; returns nil. Otherwise
-- grants nothing and returns the ms until the bucket value and whether that opening is firm (true)
-- or provisional (false: the bucket's outstanding permit may still be confirmed, which moves the
-- opening to the confirm plus CONFIRMED_GAP_MS, usually sooner). A legacy slot booked after the
-- permit moved the value past the one the grant wrote, and that value no confirm moves: firm.
local function grant_identify_permit(identify_key, permits_key, bucket, nonce, shard_id, at_ms)
  local opens_at = tonumber(redis.call('HGET', identify_key, bucket)) or 0
  if at_ms < opens_at then
    local _, _, written = outstanding_permit(permits_key, bucket)
    return opens_at - at_ms, written ~= opens_at
  end
  local held_until = at_ms + UNCONFIRMED_HOLD_MS
  redis.call('HSET', identify_key, bucket, held_until)
  redis.call('HSET', permits_key, bucket, nonce .. ':' .. shard_id .. ':' .. held_until)
  return nil
end

-- The confirm of the permit of `shard_id` of session `nonce`: true when it is the bucket's
-- outstanding permit, which it clears; the bucket then opens CONFIRMED_GAP_MS after at_ms, unless
-- a legacy slot was booked after the grant (the bucket value is no longer the grant's): that slot
-- stays. False for any other permit (a late or repeated confirm): nothing changes.
local function confirm_identify_permit(identify_key, permits_key, bucket, nonce, shard_id, at_ms)
  local holder, shard, written = outstanding_permit(permits_key, bucket)
  if holder ~= nonce or shard ~= shard_id then
    return false
  end
  redis.call('HDEL', permits_key, bucket)
  if tonumber(redis.call('HGET', identify_key, bucket)) == written then
    redis.call('HSET', identify_key, bucket, at_ms + CONFIRMED_GAP_MS)
  end
  return true
end

-- The session that asks to identify one shard of its group (identify.lua, identify_permit.lua,
-- identify_confirm.lua): returns nil and the shard id that identifies (asked_id, or the
-- session's own when it is nil) when the session holds its lease and the shard is of its group;
-- otherwise the script's answer: {"recovering", ms} (Redis lost its data: beat first),
-- {"unknown"}, {"retired"}, {"not_in_group"}, or the NOPLAN error. Reads only.
local function check_identify(plan_key, quarantine_key, nonce, shard_id, generation, asked_id)
  local identify_shard_id = asked_id or shard_id
  if redis.call('HGET', gen_key(generation, 'lease', shard_id), 'n') ~= nonce then
    local quarantine_ms = redis.call('PTTL', quarantine_key)
    if quarantine_ms > 0 then
      return {'recovering', quarantine_ms}
    end
    return {'unknown'}
  end
  local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
    'pending_max_shards', 'shards_per_process', 'pending_shards_per_process')
  if not plan[1] then
    return redis.error_reply('NOPLAN')
  end
  local active = tonumber(plan[1]) == generation and shard_id < tonumber(plan[2])
  local pending = plan[3] and tonumber(plan[3]) == generation
  if not active and not pending then
    return {'retired'}
  end
  local max_shards, group_size = tonumber(plan[2]), tonumber(plan[5]) or 1
  if not active then
    max_shards, group_size = tonumber(plan[4]), tonumber(plan[6]) or 1
  end
  if identify_shard_id < shard_id or identify_shard_id >= math.min(shard_id + group_size, max_shards) then
    return {'not_in_group'}
  end
  return nil, identify_shard_id
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
