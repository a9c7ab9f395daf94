--[[
stop_waiting.lua: take a waiting claim's ticket out of the queue of claims that wait (see
connect.lua) once its wait ended without a grant: its time was up, its client hung up, its replica
is draining, or the claim was refused for another reason. The claims behind it move up at once.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
ARGV[5]  ticket  the waiting claim's ticket

Returns  1, whether or not the ticket was still queued (a lapsed one was dropped already).
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(log W) for W waiters.
]]
local ticket = ARGV[5]

leave_waiters(ticket)
return 1
