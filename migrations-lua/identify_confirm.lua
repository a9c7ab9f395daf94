--[[
identify_confirm.lua: a session's shard sent the IDENTIFY its permit allowed (identify_permit.lua).
When that permit is still its bucket's outstanding one, the bucket opens CONFIRMED_GAP_MS after
now instead of at the end of the grant's UNCONFIRMED_HOLD_MS (includes/common.lua, "IDENTIFY
pacing"); a confirm that comes late (another permit was granted since) or twice changes nothing.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key        (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[3]  gateway_key     (hash: max_concurrency)
KEYS[4]  identify_key    (hash: bucket -> ms from which the bucket's next IDENTIFY may start)
KEYS[5]  permits_key     (hash: bucket -> "<nonce>:<shard id>:<identify value written>")
KEYS[6]  quarantine_key  (string, PX; see init.lua)
ARGV[5]  nonce                the session's nonce (from its signed session id)
ARGV[6]  default_concurrency  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[7]  shard_id             the session's shard id (from its signed session id)
ARGV[8]  generation           the session's generation (from its signed session id)
ARGV[9]  identify_shard_id    the shard of the session's group that identified, or "" for the
                              session's own (first) shard id

Returns  {"confirmed", 1 or 0}           1: it was the bucket's outstanding permit; 0: it was not
                                         (late or repeated: nothing changed)
         {"not_in_group"}                identify_shard_id is not a shard of the session's group
         {"unknown"}                     no such session
         {"recovering", retry_ms}        Redis lost its data: beat first (it re-establishes the lease)
         {"retired"}                     the session's generation was replaced: stop
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(1).
]]
local plan_key = KEYS[2]
local gateway_key = KEYS[3]
local identify_key = KEYS[4]
local permits_key = KEYS[5]
local quarantine_key = KEYS[6]
local nonce = ARGV[5]
local default_concurrency = tonumber(ARGV[6])
local shard_id = tonumber(ARGV[7])
local generation = tonumber(ARGV[8])
local identify_shard_id = tonumber(ARGV[9])

local refused, identifying = check_identify(plan_key, quarantine_key, nonce, shard_id, generation,
  identify_shard_id)
if refused then
  return refused
end

local bucket = identify_bucket(gateway_key, default_concurrency, identifying)
local confirmed = confirm_identify_permit(identify_key, permits_key, bucket, nonce, identifying,
  now_ms())
return {'confirmed', confirmed and 1 or 0}
