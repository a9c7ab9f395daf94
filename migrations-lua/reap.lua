--[[
reap.lua: free the leases that expired since the last claim and report each one once.

Leases expire by their TTL whatever happens here; this only moves expired ids of the active and
pending generations into their free sets (as connect.lua does before a claim) and queues one
`expire` event per lease, so alerts about missed beats go out even when nobody connects.
Because an id leaves `deadlines` exactly once, every expiry is reported exactly once, across all
replicas, whether connect.lua or this script sees it first.

KEYS[1]  plan    (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  events  (list, see connect.lua)
KEYS[3]  schema  (string: the key-schema version; see init.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  1 to queue events for the webhook, 0 not to
ARGV[3]  key-schema version this replica knows (integer)

Returns  the number of leases freed.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(E log N) for E expired leases.
]]
local plan_key = KEYS[1]
local events_key = KEYS[2]
local schema_key = KEYS[3]
local base = ARGV[1]
local events_enabled = ARGV[2] == '1'
local known_schema = tonumber(ARGV[3])

local newer = newer_schema(schema_key, known_schema)
if newer then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. newer)
end

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards')
if not plan[1] then
  return 0
end
local now = now_ms()

local function reap(generation, max_shards)
  return reclaim_expired(base .. 'g:' .. generation .. ':', now, function(id)
    queue_event(events_key, events_enabled, 'expire', id, generation, max_shards, now)
  end)
end

local freed = reap(plan[1], plan[2])
if plan[3] then
  freed = freed + reap(plan[3], plan[4])
end
return freed
