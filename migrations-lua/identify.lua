--[[
identify.lua: book the next IDENTIFY slot for a session that already holds its shard (Discord
invalidated its session, so it must IDENTIFY again). Same slots and budget as connect.lua, and, as
there, the lease covers the wait: it lasts at least until the slot plus lease_ms.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key        (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[3]  gateway_key     (hash: max_concurrency, total, remaining, reset_at ms, used, low_alerted)
KEYS[4]  identify_key    (hash: bucket -> ms of the bucket's next free IDENTIFY slot)
KEYS[5]  events_key      (list, see connect.lua)
KEYS[6]  quarantine_key  (string, PX; see init.lua)
ARGV[5]  nonce                the session's nonce (from its signed session id)
ARGV[6]  default_concurrency  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[7]  identify_reserve     identify reserve (integer), or -1 for 5% of Discord's daily total
ARGV[8]  shard_id             the session's shard id (from its signed session id)
ARGV[9]  generation           the session's generation (from its signed session id)
ARGV[10] identify_shard_id    the shard of the session's group that must identify, or "" for the
                              session's own (first) shard id

Returns  {"slot", sleep_ms}          wait this long, then IDENTIFY
         {"not_in_group"}            identify_shard_id is not a shard of the session's group
         {"unknown"}                 no such session
         {"recovering", retry_ms}    Redis lost its data: beat first (it re-establishes the lease)
         {"retired"}                 the session's generation was replaced: stop
         {"budget", retry_after_ms}  the identify budget is down to its reserve
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[2]
local gateway_key = KEYS[3]
local identify_key = KEYS[4]
local events_key = KEYS[5]
local quarantine_key = KEYS[6]
local nonce = ARGV[5]
local default_concurrency = tonumber(ARGV[6])
local identify_reserve = tonumber(ARGV[7])
local shard_id = tonumber(ARGV[8])
local generation = tonumber(ARGV[9])
local identify_shard_id = tonumber(ARGV[10])

local refused, identifying = check_identify(plan_key, quarantine_key, nonce, shard_id, generation,
  identify_shard_id)
if refused then
  return refused
end

local now = now_ms()
local exhausted = spend_identify(gateway_key, identify_reserve, now, 1)
if exhausted then
  if exhausted[2] then
    queue_event(events_key, 'identify_budget_low', -1, generation, -1, now)
  end
  return {'budget', exhausted[1]}
end
local sleep_ms = book_identify_slot(gateway_key, identify_key, default_concurrency, identifying, now)
local lease_key = gen_key(generation, 'lease', shard_id)
-- `w` is the group's latest slot: a sooner slot for one shard must not shorten the lease.
local slot_at = math.max(tonumber(redis.call('HGET', lease_key, 'w')) or 0, now + sleep_ms)
redis.call('HSET', lease_key, 'w', slot_at)
if redis.call('PTTL', lease_key) < sleep_ms + lease_ms then
  redis.call('PEXPIRE', lease_key, sleep_ms + lease_ms)
  redis.call('ZADD', gen_key(generation, 'deadlines'), now + sleep_ms + lease_ms, shard_id)
end
return {'slot', sleep_ms}
