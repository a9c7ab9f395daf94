--[[
reap.lua: free the leases that expired since the last claim and report each one once.

Leases expire by their TTL whatever happens here; this only moves expired ids of the active and
pending generations into their free sets (as connect.lua does before a claim) and queues one
`expire` event per lease, so alerts about missed beats go out even when nobody connects.
Because an id leaves `deadlines` exactly once, every expiry is reported exactly once, across all
replicas, whether connect.lua or this script sees it first.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key    (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[3]  events_key  (list, see connect.lua)

Returns  the number of leases freed.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(E log N) for E expired leases.
]]
local plan_key = KEYS[2]
local events_key = KEYS[3]

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards')
if not plan[1] then
  return 0
end
local now = now_ms()

local function reap(generation, max_shards)
  return reclaim_expired(generation, now, function(id)
    queue_event(events_key, 'expire', id, generation, max_shards, now)
  end)
end

local freed = reap(plan[1], plan[2])
if plan[3] then
  freed = freed + reap(plan[3], plan[4])
end
return freed
