--[[
connect.lua: claim the lowest free shard id of the active generation for a new session.

Free ids are tracked without scanning the shard range:
  * ids at or above the generation's high-water mark `next` were never handed out, so they are free;
  * ids below it that were released or expired sit in the sorted set `free` (score = id);
  * held ids sit in the sorted set `deadlines` (score = lease deadline, ms of Redis time). A lease key
    expires by its TTL; the first claim after that moves its id from `deadlines` to `free`.
The lowest free id is then min(ZPOPMIN free, next).

KEYS[1]  plan key    (hash: generation, max_shards)
KEYS[2]  fences key  (hash: shard id -> number of grants of that id so far)
ARGV[1]  key base, e.g. "{shardman}:"; every key below starts with it, so all share one hash tag
ARGV[2]  the new session id (random, made by the replica)
ARGV[3]  lease length in milliseconds (MAX_SECONDS * 1000)

Keys built from ARGV[1] (same hash slot as KEYS):
  g:<gen>:next, g:<gen>:free, g:<gen>:deadlines, g:<gen>:lease:<id> (string: session id, PX lease),
  sess:<session id> (hash: shard_id, generation, fence, last_beat ms, ...; PX lease)

Returns  {shard_id, max_shards, generation, fence} on a grant;
         {-1, max_shards, generation, 0} when every shard id of the generation is held.
Errors   "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(log N) for the claim, plus O(log N) once per lease that expired since the previous claim
         (each expiry is reclaimed exactly once), so O(log N) amortised for N shards.
]]
local plan_key = KEYS[1]
local fences_key = KEYS[2]
local base = ARGV[1]
local session_id = ARGV[2]
local lease_ms = tonumber(ARGV[3])

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local generation = tonumber(plan[1])
local max_shards = tonumber(plan[2])

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local gen_base = base .. 'g:' .. generation .. ':'
local next_key = gen_base .. 'next'
local free_key = gen_base .. 'free'
local deadlines_key = gen_base .. 'deadlines'

-- Reclaim leases whose deadline has passed. The lease key is the truth: if it is still there (its
-- TTL was refreshed by a beat this index has not seen), keep the id held and fix its deadline.
local expired = redis.call('ZRANGEBYSCORE', deadlines_key, '-inf', now_ms)
for _, id in ipairs(expired) do
  local ttl = redis.call('PTTL', gen_base .. 'lease:' .. id)
  if ttl > 0 then
    redis.call('ZADD', deadlines_key, now_ms + ttl, id)
  else
    redis.call('ZREM', deadlines_key, id)
    redis.call('ZADD', free_key, id, id)
  end
end

local shard_id
local popped = redis.call('ZPOPMIN', free_key)
if popped[1] then
  shard_id = tonumber(popped[1])
else
  local next_id = tonumber(redis.call('GET', next_key) or '0')
  if next_id >= max_shards then
    return {-1, max_shards, generation, 0}
  end
  shard_id = next_id
  redis.call('SET', next_key, next_id + 1)
end

local fence = redis.call('HINCRBY', fences_key, shard_id, 1)
redis.call('SET', gen_base .. 'lease:' .. shard_id, session_id, 'PX', lease_ms)
local session_key = base .. 'sess:' .. session_id
redis.call('HSET', session_key, 'shard_id', shard_id, 'generation', generation, 'fence', fence,
  'last_beat', now_ms)
redis.call('PEXPIRE', session_key, lease_ms)
redis.call('ZADD', deadlines_key, now_ms + lease_ms, shard_id)
return {shard_id, max_shards, generation, fence}
