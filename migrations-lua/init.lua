--[[
init.lua: make sure this deployment's keys exist and speak a schema this replica understands, and
start the quarantine that follows a loss of Redis's data.

Runs when a replica starts (quarantine_ms = 0), and again whenever another script reports that the plan is
missing while the replica is running (quarantine_ms = lease length): Redis lost its data (a restart without
persistence, a failover to an empty replica, a flush). Bots may still be running on shards Redis no
longer knows about, so for one lease length no shard is granted to a newcomer (connect.lua answers
"recovering") while those bots re-establish their leases with their next beat (beat.lua).
Creating what is missing is idempotent, so racing replicas agree.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua. Its guard already refused a stored schema newer than known_schema.
KEYS[2]  plan_key        (hash: generation, max_shards, last_generation, epoch, fence_base;
                          pending_* during a reshard)
KEYS[3]  quarantine_key  (string, PX: while it exists, no new grants)
ARGV[5]  initial_shards            shard count to start with when there is no plan yet (integer >= 1)
ARGV[6]  quarantine_ms             quarantine length in milliseconds after a suspected data loss, or
                                   0 at startup
ARGV[7]  quarantine_if_created_ms  quarantine length in milliseconds to apply only if this call
                                   creates the plan: at startup, what is left of one lease length
                                   since Redis itself started (a Redis that restarted less than a
                                   lease ago and has no plan may have lost one), else 0
ARGV[8]  new_epoch                 1 to start a new epoch even when the plan exists (the Redis
                                   Sentinel master moved: the old master's last writes may not have
                                   reached the new one), else 0
ARGV[9]  initial_shards_per_process  shards per process (group size) of a new plan (>= 1)

Returns  {schema_version, generation, max_shards, epoch}
Errors   "SCHEMA_TOO_NEW <found>" when the stored schema is newer than known_schema; the replica must not
         touch the data (an old replica during a rolling upgrade).
Cost     O(1).
]]
local plan_key = KEYS[2]
local quarantine_key = KEYS[3]
local initial_shards = tonumber(ARGV[5])
local quarantine_ms = tonumber(ARGV[6])
local quarantine_if_created_ms = tonumber(ARGV[7])
local new_epoch = ARGV[8] == '1'
local initial_shards_per_process = tonumber(ARGV[9])

if not stored_schema or stored_schema < known_schema then
  -- Version 2 (shard groups, the lease's slot `w`, event ids) reads version 1 data as it is:
  -- every field it added defaults to version 1's meaning (one shard per session). A version 1
  -- replica still running sees the raised version and stops writing.
  redis.call('SET', schema_key, known_schema)
end

local now = now_ms()

-- Event ids (see queue_event) continue above every id the lost data may have handed out, as
-- fencing tokens do: a receiver dropping repeated ids never drops a new event.
local function continue_event_ids()
  if (tonumber(redis.call('GET', key('events:seq'))) or 0) < now then
    redis.call('SET', key('events:seq'), now)
  end
end

if redis.call('EXISTS', plan_key) == 0 then
  -- Fencing tokens start above the current time in milliseconds, so tokens granted under a plan
  -- re-created after a loss exceed every token granted before it (each plan's counter cannot
  -- outrun the clock).
  redis.call('HSET', plan_key, 'generation', 1, 'max_shards', initial_shards, 'last_generation', 1,
    'epoch', now, 'fence_base', now, 'shards_per_process', initial_shards_per_process)
  quarantine_ms = math.max(quarantine_ms, quarantine_if_created_ms)
  continue_event_ids()
elseif new_epoch then
  -- Sessions granted under the old epoch whose leases did not survive re-establish them with their
  -- next beat (beat.lua), and new fencing tokens start above every earlier one.
  redis.call('HSET', plan_key, 'epoch', now, 'fence_base', now)
  continue_event_ids()
end
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'epoch')
local epoch = tonumber(plan[3]) or 0

-- Another replica may have re-created the plan a moment ago without knowing of the loss: the
-- quarantine runs from the plan's creation, whoever created it.
local hold_ms = epoch + quarantine_ms - now
if quarantine_ms > 0 and hold_ms > 0 then
  redis.call('SET', quarantine_key, 1, 'PX', hold_ms, 'NX')
end
return {known_schema, tonumber(plan[1]), tonumber(plan[2]), epoch}
