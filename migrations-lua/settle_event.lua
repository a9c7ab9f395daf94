--[[
settle_event.lua: end or renew one claim of claim_events.lua.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  events_inflight_key  (sorted set, see claim_events.lua)
ARGV[5]  event         the event's text, as claimed
ARGV[6]  redeliver_ms  0: the event was delivered (or given up for good), forget it; else keep
                       trying: it is handed out again only this long from now

Returns  1 when the event was still claimed, 0 when it was not (settled already, or handed out
         again after its claim lapsed; the new claimant owns it now, and this call changes nothing).
Errors   the envelope's.
Cost     O(log N).
]]
local events_inflight_key = KEYS[2]
local event = ARGV[5]
local redeliver_ms = tonumber(ARGV[6])

if redis.call('ZREM', events_inflight_key, event) == 0 then
  return 0
end
if redeliver_ms > 0 then
  redis.call('ZADD', events_inflight_key, now_ms() + redeliver_ms, event)
end
return 1
