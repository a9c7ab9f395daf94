--[[
waiting_processes.lua: the process labels of the claims that wait (GET /connect?wait=...&process=),
in the order they came (see connect.lua), and the processes being drained (drain.lua): the
placement job gives the waiting ones shards and moves the draining ones' shards away
(src/jobs/placement.rs). A label waiting under several tickets is listed once, at its first.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.

Returns  {waiting labels in queue order, draining labels}: tickets whose renewal lapsed, tickets
         without a label and draining processes are left out of the first; lapsed drain marks out
         of the second.
Errors   none of its own (read-only: the schema guard lets it through).
Cost     O(W + D) for W waiters and D draining processes.
]]
local now = now_ms()
local draining = redis.call('ZRANGEBYSCORE', key('draining'), now + 1, '+inf')
local excluded = {}
for _, label in ipairs(draining) do
  excluded[label] = true
end
-- Tickets renewed in time (a lapsed one's replica stopped asking).
local live = {}
for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', key('waiters:renewed'), now + 1, '+inf')) do
  live[ticket] = true
end
local labels = {}
for _, ticket in ipairs(redis.call('ZRANGE', key('waiters'), 0, -1)) do
  local label = live[ticket] and redis.call('HGET', key('waiters:process'), ticket)
  if label and not excluded[label] then
    excluded[label] = true
    labels[#labels + 1] = label
  end
end
return {labels, draining}
