--[[
connect.lua: claim the lowest free shard id for a new session, book its IDENTIFY slot, and hand
over the previous holder's resume data when there is some.

Which generation: the pending one while a reshard is under way (its sessions start as "standby"),
otherwise the active one.

Free ids are tracked without scanning the shard range:
  * ids at or above the generation's high-water mark `next` were never handed out, so they are free;
  * ids below it that were released or expired sit in the sorted set `free` (score = id);
  * held ids sit in the sorted set `deadlines` (score = lease deadline, ms of Redis time). A lease key
    expires by its TTL; the first claim (or reap.lua) after that moves its id to `free`.
The lowest free id is then min(ZPOPMIN free, next).

Identify slots: Discord allows one IDENTIFY per 5 s per bucket (bucket = shard_id % max_concurrency).
`identify` holds, per bucket, the earliest time (ms) the next IDENTIFY may start; booking a slot moves
it 5000 ms on. The session sleeps until its slot. A claim that inherits resume data needs no slot.

Daily budget: when Discord's session_start_limit is known (`gateway` hash), identifies granted since
it was read are counted in `gateway.used`; once remaining - used falls to the reserve, no new slot is
booked until Discord's reset (the replica answers 429), and one identify_budget_low event is queued.

KEYS[1]  plan      (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  fence     (string: the last fencing token granted, any shard id)
KEYS[3]  gateway   (hash: max_concurrency, total, remaining, reset_at ms, used, low_alerted)
KEYS[4]  identify  (hash: bucket -> ms of the bucket's next free IDENTIFY slot)
KEYS[5]  events    (list of "kind|shard_id|generation|max_shards|at_ms", newest first)
KEYS[6]  quarantine (string, PX: set by init.lua after a data loss; no grants while it exists)
KEYS[7]  schema  (string: the key-schema version; see init.lua)
ARGV[1]  key base, e.g. "{shardman}:"; every key below starts with it, so all share one hash tag
ARGV[2]  the new session's nonce (128 random bits, made by the replica; the session id handed to
         the bot is this nonce signed together with its lease, see src/session_token.rs)
ARGV[3]  lease length in milliseconds (MAX_SECONDS * 1000)
ARGV[4]  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[5]  identify reserve (integer), or -1 for 5% of Discord's daily total
ARGV[6]  1 to queue events for the webhook, 0 not to
ARGV[7]  key-schema version this replica knows (integer)

Keys built from ARGV[1] (same hash slot as KEYS): g:<gen>:next, g:<gen>:free, g:<gen>:deadlines,
g:<gen>:resume:<id> (resume JSON left by the last holder), and the lease itself,
g:<gen>:lease:<id> (hash, PX lease): n = session nonce, f = fencing token, t = last beat (ms),
b = 1 once beaten, g = guild count, l = latency (s), x = extra (JSON). One key per held shard.

Fencing tokens come from one counter for the deployment, so each grant of a shard id carries a
larger token than every earlier grant of it.

Returns  {"granted", shard_id, max_shards, generation, fence, sleep_ms, state, resume JSON or nil,
          plan epoch}
         {"full", max_shards, generation}        every shard id of the generation is held
         {"recovering", retry_after_ms}          Redis lost its data a moment ago: no new grants
                                                 until the bots that held shards have re-beaten
         {"budget", retry_after_ms}              the identify budget is down to its reserve
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(log N) for the claim, plus O(log N) once per lease that expired since the previous claim
         (each expiry is reclaimed exactly once), so O(log N) amortised for N shards.
]]
local plan_key = KEYS[1]
local fence_key = KEYS[2]
local gateway_key = KEYS[3]
local identify_key = KEYS[4]
local events_key = KEYS[5]
local quarantine_key = KEYS[6]
local base = ARGV[1]
local session_id = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local default_concurrency = tonumber(ARGV[4])
local reserve_setting = tonumber(ARGV[5])
local events_enabled = ARGV[6] == '1'
local schema_key = KEYS[7]
local known_schema = tonumber(ARGV[7])

-- A newer shardman has taken over this deployment's data (a rolling upgrade raised the schema):
-- this replica's build must not write to it any more.
local stored_schema = tonumber(redis.call('GET', schema_key)) or 0
if stored_schema > known_schema then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. stored_schema)
end

local IDENTIFY_INTERVAL_MS = 5000
local EVENTS_KEPT = 10000

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards', 'epoch', 'fence_base')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local quarantine_ms = redis.call('PTTL', quarantine_key)
if quarantine_ms > 0 then
  return {'recovering', quarantine_ms}
end
local epoch = tonumber(plan[5]) or 0
local fence_base = tonumber(plan[6]) or 0
local generation, max_shards, state
if plan[3] then
  generation, max_shards, state = tonumber(plan[3]), tonumber(plan[4]), 'standby'
else
  generation, max_shards, state = tonumber(plan[1]), tonumber(plan[2]), 'active'
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function queue_event(kind, shard_id)
  if events_enabled then
    redis.call('LPUSH', events_key, table.concat({kind, shard_id, generation, max_shards, now_ms}, '|'))
    redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
  end
end

local gen_base = base .. 'g:' .. generation .. ':'
local next_key = gen_base .. 'next'
local free_key = gen_base .. 'free'
local deadlines_key = gen_base .. 'deadlines'

-- Reclaim leases whose deadline has passed. The lease key is the truth: if it is still there (its
-- TTL was refreshed by a beat this index has not seen), keep the id held and fix its deadline.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines_key, '-inf', now_ms)) do
  local ttl = redis.call('PTTL', gen_base .. 'lease:' .. id)
  if ttl > 0 then
    redis.call('ZADD', deadlines_key, now_ms + ttl, id)
  else
    redis.call('ZREM', deadlines_key, id)
    redis.call('ZADD', free_key, id, id)
    queue_event('expire', id)
  end
end

local shard_id
local popped = redis.call('ZPOPMIN', free_key)
if popped[1] then
  shard_id = tonumber(popped[1])
else
  local next_id = tonumber(redis.call('GET', next_key) or '0')
  if next_id >= max_shards then
    return {'full', max_shards, generation}
  end
  shard_id = next_id
  redis.call('SET', next_key, next_id + 1)
end

-- Resume data is handed to exactly one claimant: GETDEL.
local resume = redis.call('GETDEL', gen_base .. 'resume:' .. shard_id)
local sleep_ms = 0
if not resume then
  local budget = redis.call('HMGET', gateway_key, 'total', 'remaining', 'used', 'reset_at')
  if budget[1] and now_ms < tonumber(budget[4]) then
    local total = tonumber(budget[1])
    local left = tonumber(budget[2]) - tonumber(budget[3] or '0')
    local reserve = reserve_setting
    if reserve < 0 then reserve = math.ceil(total * 0.05) end
    if left <= reserve then
      -- Put the id back: nothing was granted.
      redis.call('ZADD', free_key, shard_id, shard_id)
      if redis.call('HSETNX', gateway_key, 'low_alerted', 1) == 1 then
        queue_event('identify_budget_low', -1)
      end
      return {'budget', tonumber(budget[4]) - now_ms}
    end
    redis.call('HINCRBY', gateway_key, 'used', 1)
  end
  local concurrency = tonumber(redis.call('HGET', gateway_key, 'max_concurrency') or default_concurrency)
  local bucket = shard_id % concurrency
  local slot = math.max(now_ms, tonumber(redis.call('HGET', identify_key, bucket) or '0'))
  redis.call('HSET', identify_key, bucket, slot + IDENTIFY_INTERVAL_MS)
  sleep_ms = slot - now_ms
end

local fence = redis.call('INCR', fence_key)
if fence <= fence_base then
  fence = fence_base + 1
  redis.call('SET', fence_key, fence)
end
local lease_key = gen_base .. 'lease:' .. shard_id
redis.call('HSET', lease_key, 'n', session_id, 'f', fence, 't', now_ms, 'b', 0)
redis.call('PEXPIRE', lease_key, lease_ms)
redis.call('ZADD', deadlines_key, now_ms + lease_ms, shard_id)
queue_event('connect', shard_id)
return {'granted', shard_id, max_shards, generation, fence, sleep_ms, state, resume, epoch}
