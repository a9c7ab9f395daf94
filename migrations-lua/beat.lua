--[[
beat.lua: keep a session's lease alive, record what the shard reports, and complete a reshard when
this beat is the last one the pending generation was waiting for.

A session is "active" when its generation is the active one, "standby" when it belongs to the pending
generation of a reshard, and "retired" otherwise (its generation was replaced: the bot must stop).
The pending generation becomes active, in this one step, once every shard id of it is held by a
session that has beaten at least once (`g:<gen>:ready` collects ids whose holder has beaten).

After a loss of Redis's data (see init.lua), a beat whose lease is gone but whose signed session id
shows it was granted under the lost plan re-establishes its lease, with its shard id and fencing
token, if nobody holds that id yet; the first such beat also restores the lost generation and shard
count. Only bots beating within one lease length of the loss can do that: later, their own view of
their lease has run out anyway.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua. A refreshed lease lasts lease_ms from now.
KEYS[2]  plan_key        (hash: generation, max_shards, pending_generation, pending_max_shards, epoch)
KEYS[3]  events_key      (list, see connect.lua)
KEYS[4]  quarantine_key  (string, PX; see init.lua)
KEYS[5]  fence_key       (string: the last fencing token granted)
ARGV[5]  nonce               the session's nonce (from its signed session id)
ARGV[6]  guild_count         guild count (integer >= 0), or "" when not reported
ARGV[7]  latency             latency in seconds (decimal text), or "" when not reported
ARGV[8]  extra               extra as JSON text, or "" when not reported
ARGV[9]  resume              resume data as JSON text ({session_id, sequence, resume_gateway_url}), or ""
ARGV[10] resume_window_ms    resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[11] shard_id            from the signed session id: shard id
ARGV[12] generation          from the signed session id: generation
ARGV[13] claimed_max_shards  from the signed session id: shard count of that generation
ARGV[14] claimed_fence       from the signed session id: fencing token
ARGV[15] claimed_epoch       from the signed session id: epoch (creation time, ms) of its plan
ARGV[16] claimed_shards_per_process  from the signed session id: its generation's group size
ARGV[17] shard_reports       per-shard reports of a group, one line per shard,
                             "<shard_id>\t<guild_count or empty>\t<latency or empty>", or ""
ARGV[18] shard_resumes       per-shard resume data of a group, one line per shard,
                             "<shard_id>\t<resume JSON>", or "" (compact JSON has no raw tab or
                             newline)

With shard groups (see connect.lua) the session's shard id is its group's first; guild_count,
latency and resume report for that first shard, shard_reports and shard_resumes for any shard of
the group (lines naming a shard outside the group are ignored). Per-shard figures live in the lease
as g:<id> and l:<id> (g and l for the first shard).

The lease is the hash g:<gen>:lease:<id> (see connect.lua for its fields).

Returns  {status, shard_id, max_shards, generation, fence, state} where status is
           1  the lease was refreshed to lease_ms from now (or to its IDENTIFY slot + lease_ms,
              when that is later);
           0  no such session (unknown, expired or released): nothing changed;
          -1  the session is retired: nothing changed, the client must stop.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the lease is gone and so is the plan: run init.lua (after a loss) and retry.
Cost     O(log N). Re-establishing a lease above the high-water mark adds the ids it skips to the
         free set, once (O(N log N) at worst, once per loss); the beat that completes a reshard
         also checks the N ready holders once, O(N).
]]
local plan_key = KEYS[2]
local events_key = KEYS[3]
local quarantine_key = KEYS[4]
local fence_key = KEYS[5]
local nonce = ARGV[5]
local guild_count = ARGV[6]
local latency = ARGV[7]
local extra = ARGV[8]
local resume = ARGV[9]
local resume_window_ms = tonumber(ARGV[10])
local shard_id = tonumber(ARGV[11])
local generation = tonumber(ARGV[12])
local claimed_max_shards = tonumber(ARGV[13])
local claimed_fence = tonumber(ARGV[14])
local claimed_epoch = tonumber(ARGV[15])
local claimed_shards_per_process = tonumber(ARGV[16])
local shard_reports = ARGV[17]
local shard_resumes = ARGV[18]

local UNKNOWN = {0, -1, 0, 0, 0, 'unknown'}

local lease_key = gen_key(generation, 'lease', shard_id)
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards', 'epoch', 'last_generation', 'shards_per_process',
  'pending_shards_per_process')
local now = now_ms()

local lease = redis.call('HMGET', lease_key, 'n', 'f', 'b', 'w')
if lease[1] and lease[1] ~= nonce then
  return UNKNOWN -- the id is held by another session
end
if not lease[1] then
  if not plan[1] then
    return redis.error_reply('NOPLAN')
  end
  local epoch = tonumber(plan[5]) or 0
  -- Same plan: the session really ended. Older plan, but more than a lease ago: the bot's own
  -- view of its lease has run out, so it must connect again like anyone else.
  if epoch == claimed_epoch or epoch + lease_ms <= now then
    return UNKNOWN
  end
  redis.call('SET', quarantine_key, 1, 'PX', epoch + lease_ms - now, 'NX')
  if tonumber(plan[1]) ~= generation or tonumber(plan[2]) ~= claimed_max_shards
    or (tonumber(plan[7]) or 1) ~= claimed_shards_per_process then
    if redis.call('EXISTS', gen_key(plan[1], 'next'), gen_key(plan[1], 'deadlines')) > 0 then
      -- Another generation was already restored or started: this session's is not coming back.
      return {-1, shard_id, tonumber(plan[2]), generation, claimed_fence, 'retired'}
    end
    plan[1], plan[2] = tostring(generation), tostring(claimed_max_shards)
    plan[7] = tostring(claimed_shards_per_process)
    redis.call('HSET', plan_key, 'generation', generation, 'max_shards', claimed_max_shards,
      'shards_per_process', claimed_shards_per_process,
      'last_generation', math.max(tonumber(plan[6]) or 0, generation))
  end
  if shard_id >= claimed_max_shards then
    return UNKNOWN
  end
  local restored_group_size = claimed_shards_per_process
  -- Take the id out of the free-id index (see connect.lua).
  local next_key = gen_key(generation, 'next')
  local next_id = tonumber(redis.call('GET', next_key) or '0')
  if shard_id >= next_id then
    for id = next_id, shard_id - 1, restored_group_size do
      if redis.call('EXISTS', gen_key(generation, 'lease', id)) == 0 then
        redis.call('ZADD', gen_key(generation, 'free'), id, id)
      end
    end
    redis.call('SET', next_key, shard_id + restored_group_size)
  else
    redis.call('ZREM', gen_key(generation, 'free'), shard_id)
  end
  if (tonumber(redis.call('GET', fence_key)) or 0) < claimed_fence then
    redis.call('SET', fence_key, claimed_fence)
  end
  redis.call('HSET', lease_key, 'n', nonce, 'f', claimed_fence, 't', now, 'b', 1)
  redis.call('PEXPIRE', lease_key, lease_ms)
  lease = {nonce, tostring(claimed_fence), '1'}
end
local fence = tonumber(lease[2])
if not plan[1] then
  return redis.error_reply('NOPLAN')
end

local state, max_shards, group_size
if tonumber(plan[1]) == generation and shard_id < tonumber(plan[2]) then
  state, max_shards, group_size = 'active', tonumber(plan[2]), tonumber(plan[7]) or 1
elseif plan[3] and tonumber(plan[3]) == generation then
  state, max_shards, group_size = 'standby', tonumber(plan[4]), tonumber(plan[8]) or 1
else
  return {-1, shard_id, tonumber(plan[2]) or 0, generation, fence, 'retired'}
end

-- Never shorter than the IDENTIFY slot the lease was booked for plus a lease (see connect.lua).
local ttl_ms = math.max(lease_ms, (tonumber(lease[4]) or 0) + lease_ms - now)
redis.call('PEXPIRE', lease_key, ttl_ms)
redis.call('ZADD', gen_key(generation, 'deadlines'), now + ttl_ms, shard_id)
redis.call('HSET', lease_key, 't', now, 'b', 1)
if guild_count ~= '' then redis.call('HSET', lease_key, 'g', guild_count) end
if latency ~= '' then redis.call('HSET', lease_key, 'l', latency) end
if extra ~= '' then redis.call('HSET', lease_key, 'x', extra) end

local group_end = math.min(shard_id + group_size, max_shards)
local function in_group(id)
  return id and id >= shard_id and id < group_end
end
local function field(name, id)
  if id == shard_id then
    return name
  end
  return name .. ':' .. id
end
for line in string.gmatch(shard_reports, '[^\n]+') do
  local id, guilds, seconds = string.match(line, '^(%d+)\t([^\t]*)\t([^\t]*)$')
  id = tonumber(id)
  if in_group(id) then
    if guilds ~= '' then redis.call('HSET', lease_key, field('g', id), guilds) end
    if seconds ~= '' then redis.call('HSET', lease_key, field('l', id), seconds) end
  end
end

-- Resume data outlives the lease by the resume window, so a successor can pick it up.
local new_resumes = {}
if resume ~= '' then
  new_resumes[shard_id] = resume
end
for line in string.gmatch(shard_resumes, '[^\n]+') do
  local id, json = string.match(line, '^(%d+)\t(.+)$')
  id = tonumber(id)
  if in_group(id) then
    new_resumes[id] = json
  end
end
for id = shard_id, group_end - 1 do
  local resume_key = gen_key(generation, 'resume', id)
  if new_resumes[id] then
    redis.call('SET', resume_key, new_resumes[id], 'PX', lease_ms + resume_window_ms)
  else
    redis.call('PEXPIRE', resume_key, lease_ms + resume_window_ms)
  end
end

if state == 'standby' and lease[3] ~= '1' then
  local ready_key = gen_key(generation, 'ready')
  redis.call('SADD', ready_key, shard_id)
  -- One ready member per group (its first shard id).
  if redis.call('SCARD', ready_key) >= math.ceil(max_shards / group_size) then
    -- Every id has had a beating holder; make sure each still has one before switching.
    local complete = true
    for _, id in ipairs(redis.call('SMEMBERS', ready_key)) do
      if redis.call('HGET', gen_key(generation, 'lease', id), 'b') ~= '1' then
        redis.call('SREM', ready_key, id)
        complete = false
      end
    end
    if complete then
      local old_generation = plan[1]
      redis.call('HSET', plan_key, 'generation', generation, 'max_shards', max_shards,
        'shards_per_process', group_size)
      redis.call('HDEL', plan_key, 'pending_generation', 'pending_max_shards',
        'pending_shards_per_process')
      redis.call('DEL', ready_key)
      -- The old generation's sessions now get 401 and stop beating; its index can go with them.
      for _, suffix in ipairs({'next', 'free', 'deadlines'}) do
        redis.call('PEXPIRE', gen_key(old_generation, suffix), lease_ms)
      end
      state = 'active'
      queue_event(events_key, 'reshard_completed', -1, generation, max_shards, now)
    end
  end
end
return {1, shard_id, max_shards, generation, fence, state}
