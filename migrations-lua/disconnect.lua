--[[
disconnect.lua: release a session's shard at once, so the next /connect can take it.

KEYS[1]  unused placeholder for the plan key (kept so every script names a key of the deployment's
         hash slot, which Redis Cluster uses to route the call)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  session id

Returns  1 when the session existed and its shard id is free again; 0 when no such session.
Errors   none of its own.
Cost     O(log N).
]]
local base = ARGV[1]
local session_id = ARGV[2]

local session_key = base .. 'sess:' .. session_id
local session = redis.call('HMGET', session_key, 'shard_id', 'generation')
if not session[1] then
  return 0
end
local shard_id = session[1]
local gen_base = base .. 'g:' .. session[2] .. ':'
local lease_key = gen_base .. 'lease:' .. shard_id

redis.call('DEL', session_key)
if redis.call('GET', lease_key) == session_id then
  redis.call('DEL', lease_key)
  redis.call('ZREM', gen_base .. 'deadlines', shard_id)
  redis.call('ZADD', gen_base .. 'free', shard_id, shard_id)
end
return 1
