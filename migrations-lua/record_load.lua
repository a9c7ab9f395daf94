--[[
record_load.lua: add one point to the fleet's load history, which the status page plots. At most
one point per sample_interval_ms of Redis time, whoever calls: one replica at a time samples (the
holder of the lock `load_history`, see src/jobs/load_history.rs), and this check keeps a second
sampler, right after the lock changed hands, from adding points in between. Points older than
history_ms are dropped as new ones come.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  history_key  (sorted set: members "<at ms> <events per second> <held shards>", score = at)
ARGV[5]  sample_interval_ms  least time between two points, in milliseconds
ARGV[6]  history_ms          how long a point is kept, in milliseconds
ARGV[7]  events_per_second   the fleet's gateway dispatches per second now (decimal text)
ARGV[8]  held                the active generation's held shards now (integer)

Returns  1 when the point was added, 0 when the newest point is less than sample_interval_ms old.
Errors   none of its own.
Cost     O(log N) for N points (at most history_ms / sample_interval_ms), plus one ZREM per point
         dropped.
]]
local history_key = KEYS[2]
local sample_interval_ms = tonumber(ARGV[5])
local history_ms = tonumber(ARGV[6])
local events_per_second = ARGV[7]
local held = ARGV[8]

local now = now_ms()
local newest = redis.call('ZRANGE', history_key, -1, -1)[1]
if newest and now - tonumber(string.match(newest, '^%d+')) < sample_interval_ms then
  return 0
end
redis.call('ZADD', history_key, now, table.concat({now, events_per_second, held}, ' '))
for _, point in ipairs(redis.call('ZRANGEBYSCORE', history_key, '-inf', now - history_ms)) do
  redis.call('ZREM', history_key, point)
end
return 1
