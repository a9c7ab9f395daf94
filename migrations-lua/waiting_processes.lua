--[[
waiting_processes.lua: the process labels of the claims that wait (GET /connect?wait=...&process=),
in the order they came (see connect.lua): the placement job gives them shards
(src/jobs/placement.rs). A label waiting under several tickets is listed once, at its first.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.

Returns  the labels, in queue order (tickets whose renewal lapsed and tickets without a label are
         left out).
Errors   none of its own (read-only: the schema guard lets it through).
Cost     O(W) for W waiters.
]]
local now = now_ms()
-- Tickets renewed in time (a lapsed one's replica stopped asking).
local live = {}
for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', key('waiters:renewed'), now + 1, '+inf')) do
  live[ticket] = true
end
local labels, seen = {}, {}
for _, ticket in ipairs(redis.call('ZRANGE', key('waiters'), 0, -1)) do
  local label = live[ticket] and redis.call('HGET', key('waiters:process'), ticket)
  if label and not seen[label] then
    seen[label] = true
    labels[#labels + 1] = label
  end
end
return labels
