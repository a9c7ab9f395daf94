--[[
lock.lua: take or extend a named lock, so that one replica at a time runs a periodic job (polling
Discord, autoscaling). The lock frees itself when its holder stops renewing it.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
ARGV[5]  lock_name  the job's lock, kept at lock:<lock_name> (string: owner, PX)
ARGV[6]  owner      owner id (the replica's id)
ARGV[7]  ttl_ms     lock length in milliseconds

Returns  1 when owner holds the lock for ttl_ms from now; 0 when another owner holds it.
Errors   none of its own.
Cost     O(1).
]]
local lock_name = ARGV[5]
local owner = ARGV[6]
local ttl_ms = tonumber(ARGV[7])
local lock_key = key('lock:' .. lock_name)

if redis.call('SET', lock_key, owner, 'NX', 'PX', ttl_ms) then
  return 1
end
if redis.call('GET', lock_key) == owner then
  redis.call('PEXPIRE', lock_key, ttl_ms)
  return 1
end
return 0
