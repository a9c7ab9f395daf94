--[[
claim_events.lua: hand queued alert events to one replica's dispatcher, at least once.

A claimed event is not gone: it waits in `events_inflight` until its dispatcher settles it
(settle_event.lua) after posting it. A dispatcher renews its claims while it keeps trying; one
whose replica died (killed between claiming and posting) stops renewing, and after redeliver_ms
the event is claimed again by whichever replica asks next. Each event carries its id (see
queue_event in includes/common.lua), so a receiver can drop the rare duplicate.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  events_key           (list of "id|kind|shard_id|generation|max_shards|at_ms", newest first)
KEYS[3]  events_inflight_key  (sorted set: claimed event -> ms of Redis time when it is handed out
                               again unless settled or renewed)
ARGV[5]  max_events    how many events to claim at most (integer >= 1)
ARGV[6]  redeliver_ms  how long a claim lasts before the event is handed out again

Returns  the claimed events, overdue claims first, then the oldest queued ones.
Errors   the envelope's.
Cost     O(E log N) for E events claimed, plus O(log N) per overdue claim looked at.
]]
local events_key = KEYS[2]
local events_inflight_key = KEYS[3]
local max_events = tonumber(ARGV[5])
local redeliver_ms = tonumber(ARGV[6])

local now = now_ms()
local claimed = {}
for _, event in ipairs(redis.call('ZRANGEBYSCORE', events_inflight_key, '-inf', now)) do
  if #claimed >= max_events then
    break
  end
  redis.call('ZADD', events_inflight_key, now + redeliver_ms, event)
  claimed[#claimed + 1] = event
end
while #claimed < max_events do
  local event = redis.call('RPOP', events_key)
  if not event then
    break
  end
  redis.call('ZADD', events_inflight_key, now + redeliver_ms, event)
  claimed[#claimed + 1] = event
end
return claimed
