--[[
connect.lua: claim the lowest free shard group for a new session, book an IDENTIFY slot for each of
its shards, and hand over the previous holders' resume data when there is some.

Shard groups: with shards_per_process K (the plan's, per generation; 1 by default), group g is the
shard ids g*K .. g*K+K-1 (the last group may be shorter), and one session, one lease and one beat
serve the whole group. Everything below that says "id" (next, free, deadlines, the lease key, the
ready set) counts groups by their first shard id, so K = 1 is one shard per session.

Which generation: the pending one while a reshard is under way (its sessions start as "standby"),
otherwise the active one.

Free ids are tracked without scanning the shard range:
  * ids at or above the generation's high-water mark `next` were never handed out, so they are free;
  * ids below it that were released or expired sit in the sorted set `free` (score = id);
  * held ids sit in the sorted set `deadlines` (score = a lower bound of the lease's deadline, ms of
    Redis time: beat.lua moves it once per half lease). A lease key expires by its TTL; the first
    claim (or reap.lua) after that moves its id to `free`, and one whose lease is still alive gets
    its true deadline back.
The lowest free id is then min(ZPOPMIN free, next).

Claims that wait (GET /connect?wait=...): the replica retries a waiting claim every few hundred ms
(and at once when it frees a shard itself) under one ticket, queued in `waiters` in the order the
tickets first arrived, across all replicas (claims_ahead in includes/common.lua). A claim may take
a group only while more groups are free than claims are queued ahead of it, so no later claim,
waiting or not, overtakes an earlier waiter, and several waiters are served at once when several
groups free together (a reshard). A granted ticket leaves the queue here; the replica takes out a
ticket whose wait ended otherwise (stop_waiting.lua), and one whose replica died lapses.

Moves (SHARDS_PER_PROCESS=auto, see includes/common.lua): a claim whose process label a shard is
reserved for gets that shard (with its resume data), before and regardless of the queue. A
process being drained (drain.lua) gets nothing: "full", without joining the queue.

Identify slots: Discord allows one IDENTIFY per 5 s per bucket (bucket = shard_id % max_concurrency).
`identify` holds, per bucket, the earliest time (ms) the next IDENTIFY may start; booking a slot moves
it IDENTIFY_INTERVAL_MS (6000 ms, see includes/common.lua) on. The session sleeps until its slot. A claim that inherits resume data needs no slot.
A claim that paces its IDENTIFYs by permits (GET /connect?identify=permit) books no slot and
spends no identify here: each shard asks identify_permit.lua right before its IDENTIFY, and the
permit spends it. Its sleeps are 0 and its lease starts as a plain lease.

Daily budget: when Discord's session_start_limit is known (`gateway` hash), identifies granted since
it was read are counted in `gateway.used`; once remaining - used falls to the reserve, no new slot is
booked until Discord's reset (the replica answers 429), and one identify_budget_low event is queued.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key        (hash: generation, max_shards, pending_generation, pending_max_shards)
KEYS[3]  fence_key       (string: the last fencing token granted, any shard id)
KEYS[4]  gateway_key     (hash: max_concurrency, url, total, remaining, reset_at ms, used, low_alerted)
KEYS[5]  identify_key    (hash: bucket -> ms of the bucket's next free IDENTIFY slot)
KEYS[6]  events_key      (list of "kind|shard_id|generation|max_shards|at_ms", newest first)
KEYS[7]  quarantine_key  (string, PX: set by init.lua after a data loss; no grants while it exists)
ARGV[5]  nonce                the new session's nonce (128 random bits, made by the replica; the
                              session id handed to the bot is this nonce signed together with its
                              lease, see src/session_token.rs)
ARGV[6]  default_concurrency  max_concurrency to use when Discord's is unknown (integer >= 1)
ARGV[7]  identify_reserve     identify reserve (integer), or -1 for 5% of Discord's daily total
ARGV[8]  process_label        the bot process's label (lease field p, see beat.lua), or ""
ARGV[9]  ticket               the waiting claim's ticket (random, one per request), or "" for a
                              claim that does not wait
ARGV[10] waiter_renew_ms      how long a ticket keeps its place in the queue without another attempt
ARGV[11] identify_permits     1 when the claimant asks a permit before each IDENTIFY (no slot is
                              booked, no identify spent here), 0 for slots (the original protocol)

Keys built with gen_key (includes/common.lua): g:<gen>:next, free, deadlines, resume:<id> (resume
JSON left by the last holder), and the lease itself, g:<gen>:lease:<id> (hash). One key per held
shard.

The first lease covers the wait: it lasts until the IDENTIFY slot plus lease_ms (the lease's field
`w` keeps the slot), so a bot that sleeps `sleep_duration`, identifies and only then beats keeps
its shard however far away its slot is; beat.lua never shortens a lease below `w` + lease_ms.

Fencing tokens come from one counter for the deployment, so each grant of a shard id carries a
larger token than every earlier grant of it.

Returns  {"granted", first shard id, max_shards, generation, fence, state, plan epoch, Discord's
          gateway URL or nil, {shard ids of the group}, {sleep_ms per shard id}, {resume JSON or
          nil per shard id}, the generation's group size (signed into the session id)}
         {"full", max_shards, generation}        every shard id of the generation is held, or
                                                 the free ones are spoken for by earlier waiters,
                                                 or the claimant's process is being drained
         {"recovering", retry_after_ms}          Redis lost its data a moment ago: no new grants
                                                 until the bots that held shards have re-beaten
         {"budget", retry_after_ms}              the identify budget is down to its reserve
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan hash is missing (Redis lost its data): run init.lua and retry.
Cost     O(log N) for the claim, plus O(log N) once per lease that expired since the previous claim
         (each expiry is reclaimed exactly once), so O(log N) amortised for N shards; O(log W) more
         for W waiters.
]]
local plan_key = KEYS[2]
local fence_key = KEYS[3]
local gateway_key = KEYS[4]
local identify_key = KEYS[5]
local events_key = KEYS[6]
local quarantine_key = KEYS[7]
local nonce = ARGV[5]
local default_concurrency = tonumber(ARGV[6])
local identify_reserve = tonumber(ARGV[7])
local process_label = ARGV[8]
local ticket = ARGV[9]
local waiter_renew_ms = tonumber(ARGV[10])
local identify_permits = ARGV[11] == '1'
local plan = redis.call('HMGET', plan_key, 'generation', 'max_shards', 'pending_generation',
  'pending_max_shards', 'epoch', 'fence_base', 'shards_per_process', 'pending_shards_per_process')
if not plan[1] then
  return redis.error_reply('NOPLAN')
end
local quarantine_ms = redis.call('PTTL', quarantine_key)
if quarantine_ms > 0 then
  return {'recovering', quarantine_ms}
end
local epoch = tonumber(plan[5]) or 0
local fence_base = tonumber(plan[6]) or 0
local generation, max_shards, group_size, state
if plan[3] then
  generation, max_shards, group_size, state = tonumber(plan[3]), tonumber(plan[4]),
    tonumber(plan[8]) or 1, 'standby'
else
  generation, max_shards, group_size, state = tonumber(plan[1]), tonumber(plan[2]),
    tonumber(plan[7]) or 1, 'active'
end

local now = now_ms()
local function event(kind, shard_id)
  queue_event(events_key, kind, shard_id, generation, max_shards, now)
end

local next_key = gen_key(generation, 'next')
local free_key = gen_key(generation, 'free')

reclaim_expired(generation, now, function(id) event('expire', id) end)

-- A draining process gets no shard (drain.lua): it waits as if every shard were held, outside
-- the queue, so it is nobody's spare.
if is_draining(process_label, now) then
  return {'full', max_shards, generation}
end

-- A shard handed over for a move goes to the process it moves to, ahead of any queue.
local first_id = take_reservation(generation, process_label)
local moved_in = first_id ~= nil
if not moved_in then
  local ahead = claims_ahead(ticket, process_label, waiter_renew_ms, now)
  if ahead > 0 then
    local high_water = tonumber(redis.call('GET', next_key)) or 0
    local free_groups = redis.call('ZCARD', free_key)
      + math.max(0, math.ceil((max_shards - high_water) / group_size))
    if free_groups <= ahead then
      return {'full', max_shards, generation}
    end
  end

  -- A group is known by its first shard id; with group_size 1 a group is one shard.
  local popped = redis.call('ZPOPMIN', free_key)
  if popped[1] then
    first_id = tonumber(popped[1])
  else
    local next_id = tonumber(redis.call('GET', next_key)) or 0
    if next_id >= max_shards then
      return {'full', max_shards, generation}
    end
    first_id = next_id
    redis.call('SET', next_key, next_id + group_size)
  end
end
local shard_ids = {}
for id = first_id, math.min(first_id + group_size, max_shards) - 1 do
  shard_ids[#shard_ids + 1] = id
end

-- Shards with resume data need no IDENTIFY; the others are counted against the budget together,
-- before anything is taken, so a refused claim changes nothing. A claim by permits spends them
-- with its permits.
local identifies = 0
for _, id in ipairs(shard_ids) do
  if not identify_permits and redis.call('EXISTS', gen_key(generation, 'resume', id)) == 0 then
    identifies = identifies + 1
  end
end
if identifies > 0 then
  local exhausted = spend_identify(gateway_key, identify_reserve, now, identifies)
  if exhausted then
    -- Put the group back: nothing was granted.
    if moved_in then
      reserve_for_move(generation, first_id, process_label, now)
    else
      redis.call('ZADD', free_key, first_id, first_id)
    end
    if exhausted[2] then
      event('identify_budget_low', -1)
    end
    return {'budget', exhausted[1]}
  end
end

-- Resume data is handed to exactly one claimant: GETDEL. Each other shard books its own slot in
-- its own bucket, so a group of max_concurrency consecutive ids identifies at once.
local sleeps, resumes, longest_sleep_ms = {}, {}, 0
for index, id in ipairs(shard_ids) do
  local resume = redis.call('GETDEL', gen_key(generation, 'resume', id))
  local sleep_ms = 0
  if not resume and not identify_permits then
    sleep_ms = book_identify_slot(gateway_key, identify_key, default_concurrency, id, now)
  end
  sleeps[index], resumes[index] = sleep_ms, resume
  longest_sleep_ms = math.max(longest_sleep_ms, sleep_ms)
end

local fence = redis.call('INCR', fence_key)
if fence <= fence_base then
  fence = fence_base + 1
  redis.call('SET', fence_key, fence)
end
local lease_key = gen_key(generation, 'lease', first_id)
redis.call('HSET', lease_key, 'n', nonce, 'f', fence, 't', now, 'b', 0, 'w', now + longest_sleep_ms)
if process_label ~= '' then redis.call('HSET', lease_key, 'p', process_label) end
-- When it came by a move: the placement leaves it where it is for a while (mark_moves.lua).
if moved_in then redis.call('HSET', lease_key, 'a', now) end
redis.call('PEXPIRE', lease_key, longest_sleep_ms + lease_ms)
redis.call('ZADD', gen_key(generation, 'deadlines'), now + longest_sleep_ms + lease_ms, first_id)
event('connect', first_id)
if ticket ~= '' then
  leave_waiters(ticket)
end
local gateway_url = redis.call('HGET', gateway_key, 'url')
return {'granted', first_id, max_shards, generation, fence, state, epoch, gateway_url, shard_ids,
  sleeps, resumes, group_size}
