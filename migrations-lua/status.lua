--[[
status.lua: read the plan and every live lease of the active and pending generations, with what
each shard reported.

KEYS[1]  plan (hash: generation, max_shards, pending_generation, pending_max_shards)
ARGV[1]  key base, e.g. "{shardman}:"

Returns  {active generation, active max_shards, pending generation or 0, pending max_shards or 0,
          row, row, ...}; one row per live lease, in no particular order:
           {generation, shard_id, last_beat (ms of Redis time), beaten (0/1), fence,
            guild_count or nil, latency text or nil, extra JSON text or nil}
Errors   "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(H) for H held shards: a read of the whole fleet, meant for dashboards and scrapes.
]]
local plan_key = KEYS[1]
local base = ARGV[1]

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local result = {tonumber(plan[1]), tonumber(plan[2]), tonumber(plan[3]) or 0, tonumber(plan[4]) or 0}

local function collect(generation)
  local gen_base = base .. 'g:' .. generation .. ':'
  for _, id in ipairs(redis.call('ZRANGE', gen_base .. 'deadlines', 0, -1)) do
    local fields = redis.call('HMGET', gen_base .. 'lease:' .. id, 't', 'b', 'f', 'g', 'l', 'x')
    if fields[1] then
      result[#result + 1] = {tonumber(generation), tonumber(id), tonumber(fields[1]),
        tonumber(fields[2]) or 0, tonumber(fields[3]), fields[4], fields[5], fields[6]}
    end
  end
end

collect(plan[1])
if plan[3] then
  collect(plan[3])
end
return result
