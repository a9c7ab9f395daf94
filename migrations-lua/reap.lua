--[[
reap.lua: free the leases that expired since the last claim and report each one once.

Leases expire by their TTL whatever happens here; this only moves expired ids of the active and
pending generations into their free sets (as connect.lua does before a claim) and queues one
`expire` event per lease, so alerts about missed beats go out even when nobody connects.
Because an id leaves `deadlines` exactly once, every expiry is reported exactly once, across all
replicas, whether connect.lua or this script sees it first.

KEYS[1]  plan    (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[2]  events  (list, see connect.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  1 to queue events for the webhook, 0 not to

Returns  the number of leases freed.
Errors   none of its own.
Cost     O(E log N) for E expired leases.
]]
local plan_key = KEYS[1]
local events_key = KEYS[2]
local base = ARGV[1]
local events_enabled = ARGV[2] == '1'

local EVENTS_KEPT = 10000

local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards')
if not plan[1] then
  return 0
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local freed = 0
local function reap(generation, max_shards)
  local gen_base = base .. 'g:' .. generation .. ':'
  local deadlines_key = gen_base .. 'deadlines'
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines_key, '-inf', now_ms)) do
    local ttl = redis.call('PTTL', gen_base .. 'lease:' .. id)
    if ttl > 0 then
      redis.call('ZADD', deadlines_key, now_ms + ttl, id)
    else
      redis.call('ZREM', deadlines_key, id)
      redis.call('ZADD', gen_base .. 'free', id, id)
      redis.call('SREM', gen_base .. 'ready', id)
      freed = freed + 1
      if events_enabled then
        redis.call('LPUSH', events_key, table.concat({'expire', id, generation, max_shards, now_ms}, '|'))
        redis.call('LTRIM', events_key, 0, EVENTS_KEPT - 1)
      end
    end
  end
end

reap(plan[1], plan[2])
if plan[3] then
  reap(plan[3], plan[4])
end
return freed
