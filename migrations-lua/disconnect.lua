--[[
disconnect.lua: release a session's shard at once, so the next /connect can take it.

The holder's resume data (if it sent any) stays for the resume window, so the next claimant of the
same shard id of the same generation can RESUME instead of IDENTIFY; with a shard group (see
connect.lua), the resume data of every shard of the group does. So do the guild counts and
latencies its shards last reported: they go to the generation's reports hash (see beat.lua), which
/status and autoscale read until the next holder reports.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  events_key  (list, see connect.lua)
KEYS[3]  plan_key    (hash: generation, max_shards, shards_per_process, pending_*)
ARGV[5]  nonce             the session's nonce (from its signed session id)
ARGV[6]  resume_window_ms  resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[7]  shard_id          the session's shard id (from its signed session id)
ARGV[8]  generation        the session's generation (from its signed session id)

A shard marked to move (lease field v, see includes/common.lua) is reserved for the process it
moves to instead of freed.

Returns  1 when the session existed and its shard id is free again; 0 when no such session.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(log N), plus O(K) for a group of K shards.
]]
local events_key = KEYS[2]
local plan_key = KEYS[3]
local nonce = ARGV[5]
local resume_window_ms = tonumber(ARGV[6])
local shard_id = ARGV[7]
local generation = ARGV[8]

local lease_key = gen_key(generation, 'lease', shard_id)
if redis.call('HGET', lease_key, 'n') ~= nonce then
  return 0
end
-- The figures each shard reported, as the reports hash names them: g:<id> and l:<id>.
local carried = {}
local lease = redis.call('HGETALL', lease_key)
for index = 1, #lease, 2 do
  local name = lease[index]
  if name == 'g' or name == 'l' then
    name = name .. ':' .. shard_id
  end
  if string.match(name, '^[gl]:%d+$') then
    carried[#carried + 1] = name
    carried[#carried + 1] = lease[index + 1]
  end
end
for from = 1, #carried, 1000 do
  redis.call('HSET', gen_key(generation, 'reports'), unpack(carried, from, math.min(from + 999, #carried)))
end
local moving_to = redis.call('HGET', lease_key, 'v')
redis.call('DEL', lease_key)
redis.call('ZREM', gen_key(generation, 'deadlines'), shard_id)
redis.call('ZREM', gen_key(generation, 'moving'), shard_id)
local now = now_ms()
if moving_to then
  -- Handed over for a move: reserved for the process it moves to (includes/common.lua).
  reserve_for_move(generation, shard_id, string.match(moving_to, '^%d+ (.*)$'), now)
else
  redis.call('ZADD', gen_key(generation, 'free'), shard_id, shard_id)
end
redis.call('SREM', gen_key(generation, 'ready'), shard_id)
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'shards_per_process',
  'pending_generation', 'pending_max_shards', 'pending_shards_per_process')
local max_shards, group_size = tonumber(shard_id) + 1, 1
if plan[1] == generation then
  max_shards, group_size = tonumber(plan[2]), tonumber(plan[3]) or 1
elseif plan[4] == generation then
  max_shards, group_size = tonumber(plan[5]), tonumber(plan[6]) or 1
end
local first = tonumber(shard_id)
for id = first, math.min(first + group_size, max_shards) - 1 do
  redis.call('PEXPIRE', gen_key(generation, 'resume', id), resume_window_ms)
end
queue_event(events_key, 'disconnect', shard_id, generation, -1, now)
return 1
