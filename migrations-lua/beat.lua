--[[
beat.lua: keep a session's lease alive, record what the shard reports, and complete a reshard when
this beat is the last one the pending generation was waiting for.

A session is "active" when its generation is the active one, "standby" when it belongs to the pending
generation of a reshard, and "retired" otherwise (its generation was replaced: the bot must stop).
The pending generation becomes active, in this one step, once every shard id of it is held by a
session that has beaten at least once (`g:<gen>:ready` collects ids whose holder has beaten).

KEYS[1]  plan    (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  events  (list, see connect.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  session id
ARGV[3]  lease length in milliseconds (MAX_SECONDS * 1000)
ARGV[4]  guild count (integer >= 0), or "" when not reported
ARGV[5]  latency in seconds (decimal text), or "" when not reported
ARGV[6]  extra as JSON text, or "" when not reported
ARGV[7]  resume data as JSON text ({session_id, sequence, resume_gateway_url}), or ""
ARGV[8]  resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[9]  1 to queue events for the webhook, 0 not to

Returns  {status, shard_id, max_shards, generation, fence, state} where status is
           1  the lease was refreshed to ARGV[3] ms from now;
           0  no such session (unknown, expired or released): nothing changed;
          -1  the session is retired: nothing changed, the client must stop.
Errors   none of its own.
Cost     O(log N); the beat that completes a reshard also checks the N ready holders once, O(N).
]]
local plan_key = KEYS[1]
local events_key = KEYS[2]
local base = ARGV[1]
local session_id = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local guild_count = ARGV[4]
local latency = ARGV[5]
local extra = ARGV[6]
local resume = ARGV[7]
local resume_window_ms = tonumber(ARGV[8])
local events_enabled = ARGV[9] == '1'

local EVENTS_KEPT = 10000

local session_key = base .. 'sess:' .. session_id
local session = redis.call('HMGET', session_key, 'shard_id', 'generation', 'fence', 'beaten')
if not session[1] then
  return {0, -1, 0, 0, 0, 'unknown'}
end
local shard_id = tonumber(session[1])
local generation = tonumber(session[2])
local fence = tonumber(session[3])
local gen_base = base .. 'g:' .. generation .. ':'
local lease_key = gen_base .. 'lease:' .. shard_id

-- Both keys carry the same TTL, so this only fails if someone deleted one by hand: refuse rather
-- than extend a lease that now belongs to another session.
if redis.call('GET', lease_key) ~= session_id then
  return {0, shard_id, 0, generation, fence, 'unknown'}
end

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards')
local state, max_shards
if tonumber(plan[1]) == generation and shard_id < tonumber(plan[2]) then
  state, max_shards = 'active', tonumber(plan[2])
elseif plan[3] and tonumber(plan[3]) == generation then
  state, max_shards = 'standby', tonumber(plan[4])
else
  return {-1, shard_id, tonumber(plan[2]) or 0, generation, fence, 'retired'}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

redis.call('PEXPIRE', lease_key, lease_ms)
redis.call('PEXPIRE', session_key, lease_ms)
redis.call('ZADD', gen_base .. 'deadlines', now_ms + lease_ms, shard_id)
redis.call('HSET', session_key, 'last_beat', now_ms, 'beaten', 1)
if guild_count ~= '' then redis.call('HSET', session_key, 'guild_count', guild_count) end
if latency ~= '' then redis.call('HSET', session_key, 'latency', latency) end
if extra ~= '' then redis.call('HSET', session_key, 'extra', extra) end

-- Resume data outlives the lease by the resume window, so a successor can pick it up.
local resume_key = gen_base .. 'resume:' .. shard_id
if resume ~= '' then
  redis.call('SET', resume_key, resume, 'PX', lease_ms + resume_window_ms)
else
  redis.call('PEXPIRE', resume_key, lease_ms + resume_window_ms)
end

if state == 'standby' and session[4] ~= '1' then
  local ready_key = gen_base .. 'ready'
  redis.call('SADD', ready_key, shard_id)
  if redis.call('SCARD', ready_key) >= max_shards then
    -- Every id has had a beating holder; make sure each still has one before switching.
    local complete = true
    for _, id in ipairs(redis.call('SMEMBERS', ready_key)) do
      local holder = redis.call('GET', gen_base .. 'lease:' .. id)
      if not holder or redis.call('HGET', base .. 'sess:' .. holder, 'beaten') ~= '1' then
        redis.call('SREM', ready_key, id)
        complete = false
      end
    end
    if complete then
      local old_base = base .. 'g:' .. plan[1] .. ':'
      redis.call('HSET', plan_key, 'generation', generation, 'max_shards', max_shards)
      redis.call('HDEL', plan_key, 'pending_generation', 'pending_max_shards')
      redis.call('DEL', ready_key)
      -- The old generation's sessions now get 401 and stop beating; its index can go with them.
      for _, suffix in ipairs({'next', 'free', 'deadlines'}) do
        redis.call('PEXPIRE', old_base .. suffix, lease_ms)
      end
      state = 'active'
      if events_enabled then
        redis.call('LPUSH', events_key, table.concat({'reshard_completed', -1, generation, max_shards, now_ms}, '|'))
        redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
      end
    end
  end
end
return {1, shard_id, max_shards, generation, fence, state}
