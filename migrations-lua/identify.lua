--[[
identify.lua: book the next IDENTIFY slot for a session that already holds its shard (Discord
invalidated its session, so it must IDENTIFY again). Same slots and budget as connect.lua.

KEYS[1]  plan      (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  gateway   (hash: max_concurrency, total, remaining, reset_at ms, used, low_alerted)
KEYS[3]  identify  (hash: bucket -> ms of the bucket's next free IDENTIFY slot)
KEYS[4]  events    (list, see connect.lua)
KEYS[5]  schema  (string: the key-schema version; see init.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  the session's nonce (from its signed session id)
ARGV[3]  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[4]  identify reserve (integer), or -1 for 5% of Discord's daily total
ARGV[5]  1 to queue events for the webhook, 0 not to
ARGV[6]  the session's shard id (from its signed session id)
ARGV[7]  the session's generation (from its signed session id)
ARGV[8]  key-schema version this replica knows (integer)

Returns  {"slot", sleep_ms}          wait this long, then IDENTIFY
         {"unknown"}                 no such session
         {"retired"}                 the session's generation was replaced: stop
         {"budget", retry_after_ms}  the identify budget is down to its reserve
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(1).
]]
local plan_key = KEYS[1]
local gateway_key = KEYS[2]
local identify_key = KEYS[3]
local events_key = KEYS[4]
local base = ARGV[1]
local session_id = ARGV[2]
local default_concurrency = tonumber(ARGV[3])
local reserve_setting = tonumber(ARGV[4])
local events_enabled = ARGV[5] == '1'

local IDENTIFY_INTERVAL_MS = 5000
local EVENTS_KEPT = 10000

local shard_id = tonumber(ARGV[6])
local generation = tonumber(ARGV[7])
local schema_key = KEYS[5]
local known_schema = tonumber(ARGV[8])

-- A newer shardman has taken over this deployment's data (a rolling upgrade raised the schema):
-- this replica's build must not write to it any more.
local stored_schema = tonumber(redis.call('GET', schema_key)) or 0
if stored_schema > known_schema then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. stored_schema)
end

if redis.call('HGET', base .. 'g:' .. generation .. ':lease:' .. shard_id, 'n') ~= session_id then
  return {'unknown'}
end
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation')
local active = tonumber(plan[1]) == generation and shard_id < tonumber(plan[2])
local pending = plan[3] and tonumber(plan[3]) == generation
if not active and not pending then
  return {'retired'}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local budget = redis.call('HMGET', gateway_key, 'total', 'remaining', 'used', 'reset_at')
if budget[1] and now_ms < tonumber(budget[4]) then
  local total = tonumber(budget[1])
  local left = tonumber(budget[2]) - tonumber(budget[3] or '0')
  local reserve = reserve_setting
  if reserve < 0 then reserve = math.ceil(total * 0.05) end
  if left <= reserve then
    if redis.call('HSETNX', gateway_key, 'low_alerted', 1) == 1 and events_enabled then
      redis.call('LPUSH', events_key, table.concat({'identify_budget_low', -1, generation, -1, now_ms}, '|'))
      redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
    end
    return {'budget', tonumber(budget[4]) - now_ms}
  end
  redis.call('HINCRBY', gateway_key, 'used', 1)
end

local concurrency = tonumber(redis.call('HGET', gateway_key, 'max_concurrency') or default_concurrency)
local bucket = shard_id % concurrency
local slot = math.max(now_ms, tonumber(redis.call('HGET', identify_key, bucket) or '0'))
redis.call('HSET', identify_key, bucket, slot + IDENTIFY_INTERVAL_MS)
return {'slot', slot - now_ms}
