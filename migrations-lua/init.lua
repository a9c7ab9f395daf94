--[[
init.lua: make sure this deployment's keys exist and speak a schema this replica understands.

Runs once when a replica starts, and again whenever another script reports that the plan is missing
(Redis lost its data). Creating what is missing is idempotent, so racing replicas agree.

KEYS[1]  schema key  (string: the key-schema version of this deployment)
KEYS[2]  plan key    (hash: generation, max_shards, last_generation; pending_* during a reshard)
ARGV[1]  schema version this replica knows (integer)
ARGV[2]  shard count to start with when there is no plan yet (integer >= 1)

Returns  {schema_version, generation, max_shards}
Errors   "SCHEMA_TOO_NEW <found>" when the stored schema is newer than ARGV[1]; the replica must not
         touch the data (an old replica during a rolling upgrade).
Cost     O(1).
]]
local schema_key = KEYS[1]
local plan_key = KEYS[2]
local known_version = tonumber(ARGV[1])
local initial_shards = tonumber(ARGV[2])

local stored = tonumber(redis.call('GET', schema_key))
if stored and stored > known_version then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. stored)
end
if not stored or stored < known_version then
  -- Version 1 is the first schema: there is nothing older to migrate from.
  redis.call('SET', schema_key, known_version)
end

if redis.call('EXISTS', plan_key) == 0 then
  redis.call('HSET', plan_key, 'generation', 1, 'max_shards', initial_shards, 'last_generation', 1)
end
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards')
return {known_version, tonumber(plan[1]), tonumber(plan[2])}
