--[[
identify_permit.lua: the permit to IDENTIFY now, for one shard of a session that holds its group
(GET /connect?identify=permit books no slot; its shards ask here right before each IDENTIFY, and
confirm it with identify_confirm.lua once sent). Granted only when the shard's bucket is open (the
`identify` value has passed); the grant holds the bucket UNCONFIRMED_HOLD_MS, until the confirm
moves it to CONFIRMED_GAP_MS after the confirm (includes/common.lua, "IDENTIFY pacing"). Each grant
spends one identify of the daily budget; none is granted at the reserve. The lease is not touched:
a session beats while it waits for its permit.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key        (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[3]  gateway_key     (hash: max_concurrency, total, remaining, reset_at ms, used, low_alerted)
KEYS[4]  identify_key    (hash: bucket -> ms from which the bucket's next IDENTIFY may start)
KEYS[5]  permits_key     (hash: bucket -> "<nonce>:<shard id>:<identify value written>")
KEYS[6]  events_key      (list, see connect.lua)
KEYS[7]  quarantine_key  (string, PX; see init.lua)
ARGV[5]  nonce                the session's nonce (from its signed session id)
ARGV[6]  default_concurrency  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[7]  identify_reserve     identify reserve (integer), or -1 for 5% of Discord's daily total
ARGV[8]  shard_id             the session's shard id (from its signed session id)
ARGV[9]  generation           the session's generation (from its signed session id)
ARGV[10] identify_shard_id    the shard of the session's group that identifies, or "" for the
                              session's own (first) shard id

Returns  {"granted", shard id}           IDENTIFY now, then confirm
         {"wait", ms, firm, shard id}    the bucket opens in ms at the earliest; firm 1: at that
                                         time, 0: provisional, an outstanding permit's confirm may
                                         open it sooner (ask again soon)
         {"not_in_group"}                identify_shard_id is not a shard of the session's group
         {"unknown"}                     no such session
         {"recovering", retry_ms}        Redis lost its data: beat first (it re-establishes the lease)
         {"retired"}                     the session's generation was replaced: stop
         {"budget", retry_after_ms}      the identify budget is down to its reserve: nothing granted
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[2]
local gateway_key = KEYS[3]
local identify_key = KEYS[4]
local permits_key = KEYS[5]
local events_key = KEYS[6]
local quarantine_key = KEYS[7]
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
-- At the reserve nothing is granted, and a wait for the bucket would end the same way.
local short = identify_budget_short(gateway_key, identify_reserve, now, 1)
if short then
  if short[2] then
    queue_event(events_key, 'identify_budget_low', -1, generation, -1, now)
  end
  return {'budget', short[1]}
end
local bucket = identify_bucket(gateway_key, default_concurrency, identifying)
local wait_ms, firm = grant_identify_permit(identify_key, permits_key, bucket, nonce, identifying,
  now)
if wait_ms then
  return {'wait', wait_ms, firm and 1 or 0, identifying}
end
spend_identify(gateway_key, identify_reserve, now, 1)
return {'granted', identifying}
