--[[
lock.lua: take or extend a named lock, so that one replica at a time runs a periodic job (polling
Discord, autoscaling). The lock frees itself when its holder stops renewing it.

KEYS[1]  the lock key (string: owner)
ARGV[1]  owner id (the replica's id)
ARGV[2]  lock length in milliseconds

Returns  1 when ARGV[1] holds the lock for ARGV[2] ms from now; 0 when another owner holds it.
Errors   none of its own.
Cost     O(1).
]]
local lock_key = KEYS[1]
local owner = ARGV[1]
local ttl_ms = tonumber(ARGV[2])

if redis.call('SET', lock_key, owner, 'NX', 'PX', ttl_ms) then
  return 1
end
if redis.call('GET', lock_key) == owner then
  redis.call('PEXPIRE', lock_key, ttl_ms)
  return 1
end
return 0
