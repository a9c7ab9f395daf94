--[[
beat.lua: keep a session's lease alive and record what the shard reports.

KEYS[1]  plan key (hash: generation, max_shards)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  session id
ARGV[3]  lease length in milliseconds (MAX_SECONDS * 1000)
ARGV[4]  guild count (integer >= 0), or "" when not reported
ARGV[5]  latency in seconds (decimal text), or "" when not reported
ARGV[6]  extra as JSON text, or "" when not reported

Returns  {status, shard_id, max_shards, generation, fence} where status is
           1  the lease was refreshed to ARGV[3] ms from now;
           0  no such session (unknown, expired or released): nothing changed;
          -1  the session's generation is no longer active (its shard id is not part of the current
              shard count): nothing changed, the client must stop.
Errors   none of its own.
Cost     O(log N).
]]
local plan_key = KEYS[1]
local base = ARGV[1]
local session_id = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local guild_count = ARGV[4]
local latency = ARGV[5]
local extra = ARGV[6]

local session_key = base .. 'sess:' .. session_id
local session = redis.call('HMGET', session_key, 'shard_id', 'generation', 'fence')
if not session[1] then
  return {0, -1, 0, 0, 0}
end
local shard_id = tonumber(session[1])
local generation = tonumber(session[2])
local fence = tonumber(session[3])
local gen_base = base .. 'g:' .. generation .. ':'
local lease_key = gen_base .. 'lease:' .. shard_id

-- Both keys carry the same TTL, so this only fails if someone deleted one by hand: refuse rather
-- than extend a lease that now belongs to another session.
if redis.call('GET', lease_key) ~= session_id then
  return {0, shard_id, 0, generation, fence}
end

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards')
local active_generation = tonumber(plan[1])
local max_shards = tonumber(plan[2])
if active_generation ~= generation or shard_id >= max_shards then
  return {-1, shard_id, max_shards or 0, generation, fence}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

redis.call('PEXPIRE', lease_key, lease_ms)
redis.call('PEXPIRE', session_key, lease_ms)
redis.call('ZADD', gen_base .. 'deadlines', now_ms + lease_ms, shard_id)
redis.call('HSET', session_key, 'last_beat', now_ms)
if guild_count ~= '' then redis.call('HSET', session_key, 'guild_count', guild_count) end
if latency ~= '' then redis.call('HSET', session_key, 'latency', latency) end
if extra ~= '' then redis.call('HSET', session_key, 'extra', extra) end
return {1, shard_id, max_shards, generation, fence}
