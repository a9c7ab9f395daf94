--[[
reshard.lua: start a new generation with a new shard count or group size (zero-downtime
resharding).

The active generation keeps running untouched; /connect hands out ids of the new (pending)
generation, and beat.lua makes it active once all of its ids are held and have beaten. Starting a
reshard while another is pending replaces that pending generation (its sessions are retired).
Asking for the count already planned changes nothing. A generation that no live session holds
(a first start, a fleet that is all gone) is replaced at once, without a standby phase and without
reshard alerts: nothing ran that could hand over. Not during a quarantine, when bots that do run
may not have re-established their leases yet.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua. A replaced pending generation's index keys are kept lease_ms
(its sessions get 401 and stop within a lease).
KEYS[2]  plan_key    (hash: generation, max_shards, last_generation, pending_generation, pending_max_shards)
KEYS[3]  events_key      (list, see connect.lua)
KEYS[4]  quarantine_key  (string, PX; see init.lua)
ARGV[5]  new_max_shards          the new shard count (integer >= 1)
ARGV[6]  new_shards_per_process  the new generation's shards per process (integer >= 1), or "" to
                                 keep the planned one; a change alone is a new generation too

Returns  {started (1 or 0), active generation, active max_shards, new generation or 0,
          new max_shards or 0}: the new generation is pending, or already active when it replaced
          an idle one
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[2]
local events_key = KEYS[3]
local quarantine_key = KEYS[4]
local new_max_shards = tonumber(ARGV[5])
local new_shards_per_process = tonumber(ARGV[6])

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'last_generation',
  'pending_generation', 'pending_max_shards', 'shards_per_process', 'pending_shards_per_process')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local active_generation = tonumber(plan[1])
local active_max_shards = tonumber(plan[2])
local active_group_size = tonumber(plan[6]) or 1
local planned = tonumber(plan[5]) or active_max_shards
local planned_group_size = tonumber(plan[7]) or active_group_size
new_shards_per_process = new_shards_per_process or planned_group_size
if planned == new_max_shards and planned_group_size == new_shards_per_process then
  return {0, active_generation, active_max_shards, tonumber(plan[4]) or 0, tonumber(plan[5]) or 0}
end

local generation = math.max(tonumber(plan[3]) or 0, active_generation, tonumber(plan[4]) or 0) + 1
if plan[4] then
  -- The pending generation being replaced: its index goes once its sessions have stopped.
  for _, suffix in ipairs({'next', 'free', 'deadlines', 'ready', 'reports'}) do
    redis.call('PEXPIRE', gen_key(plan[4], suffix), lease_ms)
  end
end
if not plan[4] and redis.call('EXISTS', quarantine_key) == 0 then
  local now = now_ms()
  reclaim_expired(active_generation, now, function(id)
    queue_event(events_key, 'expire', id, active_generation, active_max_shards, now)
  end)
  if redis.call('ZCARD', gen_key(active_generation, 'deadlines')) == 0 then
    redis.call('HSET', plan_key, 'generation', generation, 'max_shards', new_max_shards,
      'shards_per_process', new_shards_per_process, 'last_generation', generation)
    for _, suffix in ipairs({'next', 'free', 'deadlines', 'ready', 'reports'}) do
      redis.call('PEXPIRE', gen_key(active_generation, suffix), lease_ms)
    end
    return {1, active_generation, active_max_shards, generation, new_max_shards}
  end
end
if new_max_shards == active_max_shards and new_shards_per_process == active_group_size then
  -- Back to the active plan: just drop the pending generation.
  redis.call('HDEL', plan_key, 'pending_generation', 'pending_max_shards',
    'pending_shards_per_process')
  redis.call('HSET', plan_key, 'last_generation', generation)
  return {1, active_generation, active_max_shards, 0, 0}
end
redis.call('HSET', plan_key, 'last_generation', generation, 'pending_generation', generation,
  'pending_max_shards', new_max_shards, 'pending_shards_per_process', new_shards_per_process)
queue_event(events_key, 'reshard_started', -1, generation, new_max_shards, now_ms())
return {1, active_generation, active_max_shards, generation, new_max_shards}
