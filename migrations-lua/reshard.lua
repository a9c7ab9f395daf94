--[[
reshard.lua: start a new generation with a new shard count (zero-downtime resharding).

The active generation keeps running untouched; /connect hands out ids of the new (pending)
generation, and beat.lua makes it active once all of its ids are held and have beaten. Starting a
reshard while another is pending replaces that pending generation (its sessions are retired).
Asking for the count already planned changes nothing.

KEYS[1]  plan    (hash: generation, max_shards, last_generation, pending_generation, pending_max_shards)
KEYS[2]  events  (list, see connect.lua)
KEYS[3]  schema  (string: the key-schema version; see init.lua)
ARGV[1]  the new shard count (integer >= 1)
ARGV[2]  1 to queue events for the webhook, 0 not to
ARGV[3]  key-schema version this replica knows (integer)
ARGV[4]  lease length in milliseconds (MAX_SECONDS * 1000): how long a replaced pending
         generation's index keys are kept (its sessions get 401 and stop within a lease)
ARGV[5]  key base, e.g. "{shardman}:"

Returns  {started (1 or 0), active generation, active max_shards, pending generation or 0,
          pending max_shards or 0}
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[1]
local events_key = KEYS[2]
local schema_key = KEYS[3]
local new_max_shards = tonumber(ARGV[1])
local events_enabled = ARGV[2] == '1'
local known_schema = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local base = ARGV[5]

local newer = newer_schema(schema_key, known_schema)
if newer then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. newer)
end

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'last_generation',
  'pending_generation', 'pending_max_shards')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local active_generation = tonumber(plan[1])
local active_max_shards = tonumber(plan[2])
local planned = tonumber(plan[5]) or active_max_shards
if planned == new_max_shards then
  return {0, active_generation, active_max_shards, tonumber(plan[4]) or 0, tonumber(plan[5]) or 0}
end

local generation = math.max(tonumber(plan[3]) or 0, active_generation, tonumber(plan[4]) or 0) + 1
if plan[4] then
  -- The pending generation being replaced: its index goes once its sessions have stopped.
  local replaced_base = base .. 'g:' .. plan[4] .. ':'
  for _, suffix in ipairs({'next', 'free', 'deadlines', 'ready'}) do
    redis.call('PEXPIRE', replaced_base .. suffix, lease_ms)
  end
end
if new_max_shards == active_max_shards then
  -- Back to the active count: just drop the pending generation.
  redis.call('HDEL', plan_key, 'pending_generation', 'pending_max_shards')
  redis.call('HSET', plan_key, 'last_generation', generation)
  return {1, active_generation, active_max_shards, 0, 0}
end
redis.call('HSET', plan_key, 'last_generation', generation, 'pending_generation', generation,
  'pending_max_shards', new_max_shards)
queue_event(events_key, events_enabled, 'reshard_started', -1, generation, new_max_shards, now_ms())
return {1, active_generation, active_max_shards, generation, new_max_shards}
