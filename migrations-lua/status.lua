--[[
status.lua: read the plan and every live lease of the active generation, with what each shard reported.

KEYS[1]  plan key (hash: generation, max_shards)
ARGV[1]  key base, e.g. "{shardman}:"

Returns  {max_shards, generation, row, row, ...}; one row per live lease, in no particular order:
           {shard_id, last_beat (ms of Redis time), guild_count or nil, latency text or nil,
            extra JSON text or nil}
         {0, 0} when there is no plan (Redis lost its data).
Errors   none of its own.
Cost     O(H) for H held shards: this is a read of the whole fleet, meant for dashboards and scrapes.
]]
local plan_key = KEYS[1]
local base = ARGV[1]

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards')
if not plan[1] then
  return {0, 0}
end
local generation = plan[1]
local gen_base = base .. 'g:' .. generation .. ':'

local result = {tonumber(plan[2]), tonumber(generation)}
for _, id in ipairs(redis.call('ZRANGE', gen_base .. 'deadlines', 0, -1)) do
  local session_id = redis.call('GET', gen_base .. 'lease:' .. id)
  if session_id then
    local fields = redis.call('HMGET', base .. 'sess:' .. session_id, 'last_beat', 'guild_count',
      'latency', 'extra')
    if fields[1] then
      result[#result + 1] = {tonumber(id), tonumber(fields[1]), fields[2], fields[3], fields[4]}
    end
  end
end
return result
