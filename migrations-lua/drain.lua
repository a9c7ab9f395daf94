--[[
drain.lua: mark a bot process as draining, or take the mark off (`shardman drain`,
POST/DELETE /processes/{label}/drain; SHARDS_PER_PROCESS=auto). The placement job moves every
shard of a draining process to the others by RESUME (src/domain/placement.rs), /connect gives it
no shard (connect.lua), and waiting_processes.lua leaves it out of the processes that may take
shards. A mark lapses at its deadline, so a label reused later (a StatefulSet pod) is not drained
forever.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
ARGV[5]  process_label  the process (its label has no control characters: validated by the route)
ARGV[6]  drain_ms       how long the mark lasts, in milliseconds; 0 takes it off

Returns  {marked, deadline_ms}: marked 1 when the process is draining now (deadline_ms is when the
         mark lapses), 0 when it is not (deadline_ms 0).
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(log D) for D draining processes, plus O(log D) per lapsed mark.
]]
local process_label = ARGV[5]
local drain_ms = tonumber(ARGV[6])

local now = now_ms()
local draining_key = key('draining')
for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', draining_key, '-inf', now)) do
  redis.call('ZREM', draining_key, lapsed)
end
if drain_ms <= 0 then
  redis.call('ZREM', draining_key, process_label)
  return {0, 0}
end
local deadline = now + drain_ms
redis.call('ZADD', draining_key, deadline, process_label)
return {1, deadline}
