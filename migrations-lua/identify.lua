--[[
identify.lua: book the next IDENTIFY slot for a session that already holds its shard (Discord
invalidated its session, so it must IDENTIFY again). Same slots and budget as connect.lua.

KEYS[1]  plan      (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  gateway   (hash: max_concurrency, total, remaining, reset_at ms, used, low_alerted)
KEYS[3]  identify  (hash: bucket -> ms of the bucket's next free IDENTIFY slot)
KEYS[4]  events    (list, see connect.lua)
KEYS[5]  schema  (string: the key-schema version; see init.lua)
KEYS[6]  quarantine (string, PX; see init.lua)
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
         {"recovering", retry_ms}    Redis lost its data: beat first (it re-establishes the lease)
         {"retired"}                 the session's generation was replaced: stop
         {"budget", retry_after_ms}  the identify budget is down to its reserve
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[1]
local gateway_key = KEYS[2]
local identify_key = KEYS[3]
local events_key = KEYS[4]
local schema_key = KEYS[5]
local quarantine_key = KEYS[6]
local base = ARGV[1]
local session_id = ARGV[2]
local default_concurrency = tonumber(ARGV[3])
local reserve_setting = tonumber(ARGV[4])
local events_enabled = ARGV[5] == '1'
local shard_id = tonumber(ARGV[6])
local generation = tonumber(ARGV[7])
local known_schema = tonumber(ARGV[8])

local newer = newer_schema(schema_key, known_schema)
if newer then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. newer)
end
if redis.call('HGET', base .. 'g:' .. generation .. ':lease:' .. shard_id, 'n') ~= session_id then
  local quarantine_ms = redis.call('PTTL', quarantine_key)
  if quarantine_ms > 0 then
    return {'recovering', quarantine_ms}
  end
  return {'unknown'}
end
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local active = tonumber(plan[1]) == generation and shard_id < tonumber(plan[2])
local pending = plan[3] and tonumber(plan[3]) == generation
if not active and not pending then
  return {'retired'}
end

local now = now_ms()
local exhausted = spend_identify(gateway_key, reserve_setting, now)
if exhausted then
  if exhausted[2] then
    queue_event(events_key, events_enabled, 'identify_budget_low', -1, generation, -1, now)
  end
  return {'budget', exhausted[1]}
end
return {'slot', book_identify_slot(gateway_key, identify_key, default_concurrency, shard_id, now)}
