--[[
beat.lua: keep a session's lease alive, record what the shard reports, and complete a reshard when
this beat is the last one the pending generation was waiting for.

After a loss of Redis's data (see init.lua), a beat whose session is gone but whose signed session id
shows it was granted under the lost plan re-establishes its lease, with its shard id and fencing
token, if nobody holds that id yet; the first such beat also restores the lost generation and shard
count. Only bots beating within one lease length of the loss can do that: later, their own view of
their lease has run out anyway.

A session is "active" when its generation is the active one, "standby" when it belongs to the pending
generation of a reshard, and "retired" otherwise (its generation was replaced: the bot must stop).
The pending generation becomes active, in this one step, once every shard id of it is held by a
session that has beaten at least once (`g:<gen>:ready` collects ids whose holder has beaten).

KEYS[1]  plan    (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  events  (list, see connect.lua)
KEYS[3]  quarantine (string, PX; see init.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  the session's key (the nonce of its signed session id)
ARGV[3]  lease length in milliseconds (MAX_SECONDS * 1000)
ARGV[4]  guild count (integer >= 0), or "" when not reported
ARGV[5]  latency in seconds (decimal text), or "" when not reported
ARGV[6]  extra as JSON text, or "" when not reported
ARGV[7]  resume data as JSON text ({session_id, sequence, resume_gateway_url}), or ""
ARGV[8]  resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[9]  1 to queue events for the webhook, 0 not to
ARGV[10] from the signed session id: shard id
ARGV[11] from the signed session id: generation
ARGV[12] from the signed session id: shard count of that generation
ARGV[13] from the signed session id: fencing token
ARGV[14] from the signed session id: epoch (creation time, ms) of the plan it was granted under

Returns  {status, shard_id, max_shards, generation, fence, state} where status is
           1  the lease was refreshed to ARGV[3] ms from now;
           0  no such session (unknown, expired or released): nothing changed;
          -1  the session is retired: nothing changed, the client must stop.
Errors   "NOPLAN" when the session is gone and so is the plan: run init.lua (after a loss) and retry.
Cost     O(log N); re-establishing a lease above the high-water mark adds the ids it skips to the free
         set, once (O(N log N) at worst, once per loss); the beat that completes a reshard also checks the N ready holders once, O(N).
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
local claimed_shard = tonumber(ARGV[10])
local claimed_generation = tonumber(ARGV[11])
local claimed_max_shards = tonumber(ARGV[12])
local claimed_fence = tonumber(ARGV[13])
local claimed_epoch = tonumber(ARGV[14])
local quarantine_key = KEYS[3]

local EVENTS_KEPT = 10000

local session_key = base .. 'sess:' .. session_id
local session = redis.call('HMGET', session_key, 'shard_id', 'generation', 'fence', 'beaten')
if not session[1] then
  local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'epoch', 'last_generation')
  if not plan[1] then
    return redis.error_reply('NOPLAN')
  end
  local epoch = tonumber(plan[3]) or 0
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  -- Same plan: the session really ended. Older plan, but more than a lease ago: the bot's own
  -- view of its lease has run out, so it must connect again like anyone else.
  if epoch == claimed_epoch or epoch + lease_ms <= now_ms then
    return {0, -1, 0, 0, 0, 'unknown'}
  end
  redis.call('SET', quarantine_key, 1, 'PX', epoch + lease_ms - now_ms, 'NX')
  local generation = tonumber(plan[1])
  if generation ~= claimed_generation or tonumber(plan[2]) ~= claimed_max_shards then
    local gen_base = base .. 'g:' .. generation .. ':'
    local untouched = redis.call('EXISTS', gen_base .. 'next', gen_base .. 'deadlines') == 0
    if not untouched then
      -- Another generation was already restored or started: this session's is not coming back.
      return {-1, claimed_shard, tonumber(plan[2]), claimed_generation, claimed_fence, 'retired'}
    end
    redis.call('HSET', plan_key, 'generation', claimed_generation, 'max_shards', claimed_max_shards,
      'last_generation', math.max(tonumber(plan[4]) or 0, claimed_generation))
  end
  local gen_base = base .. 'g:' .. claimed_generation .. ':'
  local lease_key = gen_base .. 'lease:' .. claimed_shard
  if claimed_shard >= claimed_max_shards
    or not redis.call('SET', lease_key, session_id, 'PX', lease_ms, 'NX') then
    return {0, -1, 0, 0, 0, 'unknown'}
  end
  -- Take the id out of the free-id index (see connect.lua).
  local next_key = gen_base .. 'next'
  local next_id = tonumber(redis.call('GET', next_key) or '0')
  if claimed_shard >= next_id then
    for id = next_id, claimed_shard - 1 do
      if redis.call('EXISTS', gen_base .. 'lease:' .. id) == 0 then
        redis.call('ZADD', gen_base .. 'free', id, id)
      end
    end
    redis.call('SET', next_key, claimed_shard + 1)
  else
    redis.call('ZREM', gen_base .. 'free', claimed_shard)
  end
  local fences_key = base .. 'fences'
  if (tonumber(redis.call('HGET', fences_key, claimed_shard)) or 0) < claimed_fence then
    redis.call('HSET', fences_key, claimed_shard, claimed_fence)
  end
  redis.call('HSET', session_key, 'shard_id', claimed_shard, 'generation', claimed_generation,
    'fence', claimed_fence, 'last_beat', now_ms, 'beaten', 1)
  redis.call('PEXPIRE', session_key, lease_ms)
  redis.call('ZADD', gen_base .. 'deadlines', now_ms + lease_ms, claimed_shard)
  session = {tostring(claimed_shard), tostring(claimed_generation), tostring(claimed_fence), '1'}
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
