--[[
beat.lua: keep sessions' leases alive, record what their shards report, and complete a reshard when
a beat is the last one the pending generation was waiting for. One call applies a batch of beats
(group commit: a replica gathers the beats that arrive while its previous batches are in flight),
one after the other, exactly as if each were its own call, and answers each beat on its own; a
single beat is a batch of one.

A session is "active" when its generation is the active one, "standby" when it belongs to the pending
generation of a reshard, and "retired" otherwise (its generation was replaced: the bot must stop).
The pending generation becomes active, in this one step, once every shard id of it is held by a
session that has beaten at least once while ready, i.e. connected to Discord (`g:<gen>:ready`
collects ids whose holder has; a client that beats from its claim on says `ready` false until its
shards are READY, so the old generation is never retired before the new one is up). Beats
later in the same batch see the switch (a beat of the old generation after it answers retired).

After a loss of Redis's data (see init.lua), a beat whose lease is gone but whose signed session id
shows it was granted under the lost plan re-establishes its lease, with its shard id and fencing
token, if nobody holds that id yet; the first such beat also restores the lost generation and shard
count. Only bots beating within one lease length of the loss can do that: later, their own view of
their lease has run out anyway.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua. A refreshed lease lasts lease_ms from now.
KEYS[2]  plan_key        (hash: PLAN_FIELDS below; see init.lua and reshard.lua)
KEYS[3]  events_key      (list, see connect.lua)
KEYS[4]  quarantine_key  (string, PX; see init.lua)
KEYS[5]  fence_key       (string: the last fencing token granted)
ARGV[5]  resume_window_ms    resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[6..] the beats, BEAT_FIELDS arguments each, one beat after the other; a beat's fields, from
          its first argument `at` on (src/store/scripts/beat.rs declares them in this order; a
          figure the lease keeps names its lease field, which fleet_page.rs reads back for /status):
  beat[0]   nonce               the session's nonce (from its signed session id)
  beat[1]   guild_count         guild count (integer >= 0), or "" when not reported; lease field g
  beat[2]   latency             latency in seconds (decimal text), or "" when not reported; lease
                                field l
  beat[3]   extra               extra as JSON text, or "" when not reported; lease field x
  beat[4]   resume              resume data as JSON text ({session_id, sequence, resume_gateway_url}), or ""
  beat[5]   shard_id            from the signed session id: shard id
  beat[6]   generation          from the signed session id: generation
  beat[7]   claimed_max_shards  from the signed session id: shard count of that generation
  beat[8]   claimed_fence       from the signed session id: fencing token
  beat[9]   claimed_epoch       from the signed session id: epoch (creation time, ms) of its plan
  beat[10]  claimed_shards_per_process  from the signed session id: its generation's group size
  beat[11]  shard_reports       per-shard reports of a group, one line per shard,
                                "<shard_id>\t<guild_count or empty>\t<latency or empty>\t<events
                                or empty>", or ""
  beat[12]  shard_resumes       per-shard resume data of a group, one line per shard,
                                "<shard_id>\t<resume JSON>", or "" (compact JSON has no raw tab or
                                newline)
  beat[13]  ready               "1" when every shard of the session is connected to Discord, "0"
                                while the bot still waits for its IDENTIFY slot or READY
  beat[14]  events              gateway dispatches the first shard's session has received so far
                                (integer >= 0), or ""; a load counter (below), lease field e
  beat[15]  cpu_seconds         the process's CPU time so far in seconds (decimal text >= 0), or "";
                                a load counter (below), lease field c
  beat[16]  rss_bytes           the process's resident memory in bytes (integer), or ""; lease
                                field m
  beat[17]  process             the process label the session was claimed with, or ""; lease
                                field p, set only where the lease has none (a lease re-established
                                after a loss of Redis's data: connect.lua set it at the grant)

With shard groups (see connect.lua) the session's shard id is its group's first; guild_count,
latency, events and resume report for that first shard, shard_reports and shard_resumes for any
shard of the group (lines naming a shard outside the group are ignored). Per-shard figures live in
the lease as g:<id>, l:<id> and e:<id> (g, l and e for the first shard).

Load counters (events, cpu_seconds) become rates on Redis's clock: the counter's lease field keeps
"<counter> <since ms> <rate per second>", the last counter taken as the baseline, when, and the rate
between the two baselines before it ("" until there were two). A report at least
load_window_ms (a sixth of the lease: half a beat interval) after the baseline sets the rate to
(counter - baseline) / elapsed and becomes the baseline; an earlier one changes nothing (a retried
beat, two beats of one batch), so a counter never counts twice and a rate spans about a beat
interval. A counter that stands still keeps its baseline and its time (the rate becomes 0), so
<since ms> is when the counter last moved: mark_silent.lua reads silence from it, and the first
report after a still spell measures its rate from that time. A counter below the baseline is a new
Discord session: the baseline restarts from it and the rate stays until the next report. The lease
field p, the process label, is connect.lua's (a beat sets it only where a lease re-established after
a data loss has none).

The lease is the hash g:<gen>:lease:<id> (see includes/common.lua for its fields; `r` = 1 once
this session stored resume data, so beats without any need not touch the resume keys). A guild
count that differs from the one in the lease is also kept, with the latency beaten with it, in the
generation's g:<gen>:reports (fields g:<id> and l:<id>), which outlives the lease: /status and
autoscale see a shard's last count until its next holder reports (fleet_page.lua).

Returns  one text: the beats' answers in order, one line each, joined by "\n"; a line is
         "<status> <shard_id> <max_shards> <generation> <fence> <state>" (one string, which Redis
         and the replica handle far faster than an array of arrays), where status is
           1  the lease was refreshed to lease_ms from now (or to its IDENTIFY slot + lease_ms,
              when that is later);
           0  no such session (unknown, expired or released): nothing changed;
          -1  the session is retired: nothing changed, the client must stop;
         and a status-1 line ends in " move" when the placement marked the shard to move (lease
         field v, see includes/common.lua): the holder must hand it over; then in
         " reconnect <id>,<id>..." when mark_silent.lua asked that the session's silent shards be
         reconnected (lease field q): told once, the field is cleared.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
         "NOPLAN" when the plan is gone (Redis lost its data): nothing changed; run init.lua (after
         a loss) and retry the batch.
Calls    3 per batch (the schema, the plan, TIME) and 3 or 4 per ordinary beat (HMGET, PEXPIRE and
         HSET of the lease; ZADD of its deadline only in the first beat of each half lease, as the
         deadlines need only be a lower bound), plus one HMGET of the other shards' event counters
         for a group's beat that reports them, plus one per resume key of a session that sent
         resume data, and one when a guild count changed (plus one per beat of a group that
         reports its other shards' counts).
Cost     O(log N) per beat. Re-establishing a lease above the high-water mark adds the ids it skips
         to the free set, once (O(N log N) at worst, once per loss); the beat that completes a
         reshard also checks the N ready holders once, O(N).
]]
local plan_key = KEYS[2]
local events_key = KEYS[3]
local quarantine_key = KEYS[4]
local fence_key = KEYS[5]
local resume_window_ms = tonumber(ARGV[5])

local FIRST_BEAT, BEAT_FIELDS = 6, 18
local UNKNOWN = '0 -1 0 0 0 unknown'

-- A beat's answer line (see Returns), for the rare answers; an alive beat's line is built from
-- texts at the end of beat(), which needs no number formatting.
local function answer(status, shard_id, max_shards, generation, fence, state)
  return table.concat({status, shard_id, max_shards, generation, fence, state}, ' ')
end

-- Fields per HSET at most: unpack() is bounded by Lua's C stack.
local HSET_CHUNK = 1000

-- The plan, read once for the batch: its fields' texts by name (false when unset). Every write to
-- the plan below updates this copy too, so each beat sees the plan as the beats before it left it.
local PLAN_FIELDS = {'generation', 'max_shards', 'pending_generation', 'pending_max_shards', 'epoch',
  'last_generation', 'shards_per_process', 'pending_shards_per_process'}
local plan = {}
local plan_values = redis.call('HMGET', plan_key, unpack(PLAN_FIELDS))
for index, name in ipairs(PLAN_FIELDS) do
  plan[name] = plan_values[index]
end
if not plan.generation then
  return redis.error_reply('NOPLAN')
end
local now = now_ms()
-- Text forms, made once per batch: Redis turns a Lua number argument into text with printf, which
-- cost more than the beat's own commands (BENCHMARKS.md, issue 11). An ordinary beat passes only
-- text: these, and its own ARGV.
local now_text = tostring(now)
local lease_ms_text = tostring(lease_ms)
local deadline_text = tostring(now + lease_ms)
local half_lease_ms = math.max(1, math.floor(lease_ms / 2))
local beat_window = math.floor(now / half_lease_ms)

-- The fields a beat writes to its lease, gathered so that one HSET (per HSET_CHUNK) sets them all.
local lease_fields = {}
local function flush_fields(lease_key)
  if #lease_fields > 0 then
    redis.call('HSET', lease_key, unpack(lease_fields))
    lease_fields = {}
  end
end
local function set_field(lease_key, name, value)
  lease_fields[#lease_fields + 1] = name
  lease_fields[#lease_fields + 1] = value
  if #lease_fields >= HSET_CHUNK then
    flush_fields(lease_key)
  end
end

-- The lease field of a shard of a group: g for its first shard, g:<id> for the others.
local function shard_field(name, id, first_id)
  if id == first_id then
    return name
  end
  return name .. ':' .. id
end

-- A group's per-shard figures (shard_reports' lines, see above), to its lease's g:<id> and l:<id>;
-- each shard's events go to `counters` (lease field -> counter text) for update_load_counters.
-- Lines naming a shard outside first_id .. group_end - 1 are ignored.
local function set_shard_reports(lease_key, shard_reports, first_id, group_end, counters)
  for line in string.gmatch(shard_reports, '[^\n]+') do
    local id, guilds, seconds, events = string.match(line, '^(%d+)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
    id = tonumber(id)
    if id and id >= first_id and id < group_end then
      if guilds ~= '' then set_field(lease_key, shard_field('g', id, first_id), guilds) end
      if seconds ~= '' then set_field(lease_key, shard_field('l', id, first_id), seconds) end
      if events ~= '' then counters[shard_field('e', id, first_id)] = events end
    end
  end
end

-- A load counter's lease field after a report of `reported` (see "Load counters" above), or nil
-- when the field stays as it is. `previous` is the field's text (false when unset).
local load_window_ms = math.max(1000, math.floor(lease_ms / 6))
local STILL_RATE = '0.000'
local function advanced_counter(previous, reported)
  local baseline, since, rate
  if previous then
    baseline, since, rate = string.match(previous, '^(%S+) (%d+) (%S*)$')
  end
  baseline, since = tonumber(baseline), tonumber(since)
  local counter = tonumber(reported)
  if baseline and counter >= baseline then
    local elapsed_ms = now - since
    if elapsed_ms < load_window_ms then
      return nil
    end
    if counter == baseline then
      -- Still: the baseline and its time stay (see "Load counters"); written once.
      if rate == STILL_RATE then
        return nil
      end
      return previous:match('^%S+ %d+ ') .. STILL_RATE
    end
    rate = string.format('%.3f', (counter - baseline) * 1000 / elapsed_ms)
  end
  return reported .. ' ' .. now_text .. ' ' .. (rate or '')
end

-- Moves the lease's load counters (`counters`: lease field -> reported counter text) on. `known`
-- holds the fields the beat read already (e and c, with the lease); the others (e:<id> of a
-- group's other shards) are read with one HMGET.
local function update_load_counters(lease_key, counters, known)
  local unread = {}
  for field in pairs(counters) do
    if known[field] == nil then
      unread[#unread + 1] = field
    end
  end
  if #unread > 0 then
    local values = redis.call('HMGET', lease_key, unpack(unread))
    for index, field in ipairs(unread) do
      known[field] = values[index]
    end
  end
  for field, reported in pairs(counters) do
    local text = advanced_counter(known[field], reported)
    if text then set_field(lease_key, field, text) end
  end
end

-- The resume data a beat sends, by shard id: `resume` for its first shard, then shard_resumes'
-- lines for the shards of its group (first_id .. group_end - 1; others are ignored). Nil when
-- there is none.
local function reported_resumes(resume, shard_resumes, first_id, group_end)
  local resumes = nil
  if resume ~= '' then
    resumes = {[first_id] = resume}
  end
  for line in string.gmatch(shard_resumes, '[^\n]+') do
    local id, json = string.match(line, '^(%d+)\t(.+)$')
    id = tonumber(id)
    if id and id >= first_id and id < group_end then
      resumes = resumes or {}
      resumes[id] = json
    end
  end
  return resumes
end

-- Resume data outlives the lease by the resume window, so a successor can pick it up: stores the
-- group's new resume data (new_resumes, may be nil) and keeps the rest of it as long.
local function keep_resumes(generation, first_id, group_end, new_resumes)
  for id = first_id, group_end - 1 do
    local resume_key = gen_key(generation, 'resume', id)
    if new_resumes and new_resumes[id] then
      redis.call('SET', resume_key, new_resumes[id], 'PX', lease_ms + resume_window_ms)
    else
      redis.call('PEXPIRE', resume_key, lease_ms + resume_window_ms)
    end
  end
end

-- Keeps the guild counts that changed, with the latency beaten with them, in the generation's
-- reports hash, which outlives the lease (see the header): the first shard's against the lease's
-- g (leased_guilds, read with the lease), shard_reports' lines against their lease fields. Must
-- run before this beat's figures reach the lease.
local function carry_reports(generation, lease_key, first_id, group_end, guild_count, latency,
    leased_guilds, shard_reports)
  local carried = {}
  local function carry(id, guilds, seconds)
    carried[#carried + 1] = 'g:' .. id
    carried[#carried + 1] = guilds
    if seconds ~= '' then
      carried[#carried + 1] = 'l:' .. id
      carried[#carried + 1] = seconds
    end
  end
  if guild_count ~= '' and guild_count ~= leased_guilds then
    carry(first_id, guild_count, latency)
  end
  local lines = {}
  for line in string.gmatch(shard_reports, '[^\n]+') do
    local id, guilds, seconds = string.match(line, '^(%d+)\t([^\t]*)\t([^\t]*)$')
    id = tonumber(id)
    if id and id >= first_id and id < group_end and guilds ~= '' then
      lines[#lines + 1] = {id, guilds, seconds}
    end
  end
  for from = 1, #lines, HSET_CHUNK do
    local names = {}
    for index = from, math.min(from + HSET_CHUNK - 1, #lines) do
      names[#names + 1] = shard_field('g', lines[index][1], first_id)
    end
    local leased = redis.call('HMGET', lease_key, unpack(names))
    for offset = 1, #names do
      local line = lines[from + offset - 1]
      if leased[offset] ~= line[2] then
        carry(line[1], line[2], line[3])
      end
    end
  end
  local reports_key = gen_key(generation, 'reports')
  for from = 1, #carried, HSET_CHUNK do
    redis.call('HSET', reports_key, unpack(carried, from, math.min(from + HSET_CHUNK - 1, #carried)))
  end
end

-- After a loss of Redis's data (see above): re-creates the lease of a beat that found none, when
-- its signed claims (texts, as the beat got them) show it was granted under the lost plan, and
-- restores that plan's generation and shard count unless another generation came back first.
-- `beaten` is the new lease's b. Returns the new lease's fence (text), or nil and the beat's
-- answer when the session cannot come back.
local function reestablish_lease(lease_key, nonce, shard_id, generation, beaten, claimed_max_shards,
    claimed_fence, claimed_epoch, claimed_shards_per_process)
  claimed_max_shards, claimed_fence = tonumber(claimed_max_shards), tonumber(claimed_fence)
  claimed_epoch = tonumber(claimed_epoch)
  claimed_shards_per_process = tonumber(claimed_shards_per_process)
  local epoch = tonumber(plan.epoch) or 0
  -- Same plan: the session really ended. Older plan, but more than a lease ago: the bot's own
  -- view of its lease has run out, so it must connect again like anyone else.
  if epoch == claimed_epoch or epoch + lease_ms <= now then
    return nil, UNKNOWN
  end
  redis.call('SET', quarantine_key, 1, 'PX', epoch + lease_ms - now, 'NX')
  if tonumber(plan.generation) ~= generation or tonumber(plan.max_shards) ~= claimed_max_shards
    or (tonumber(plan.shards_per_process) or 1) ~= claimed_shards_per_process then
    if redis.call('EXISTS', gen_key(plan.generation, 'next'), gen_key(plan.generation, 'deadlines')) > 0 then
      -- Another generation was already restored or started: this session's is not coming back.
      return nil, answer(-1, shard_id, tonumber(plan.max_shards), generation, claimed_fence, 'retired')
    end
    local last_generation = math.max(tonumber(plan.last_generation) or 0, generation)
    redis.call('HSET', plan_key, 'generation', generation, 'max_shards', claimed_max_shards,
      'shards_per_process', claimed_shards_per_process, 'last_generation', last_generation)
    plan.generation, plan.max_shards = tostring(generation), tostring(claimed_max_shards)
    plan.last_generation = tostring(last_generation)
    plan.shards_per_process = tostring(claimed_shards_per_process)
  end
  if shard_id >= claimed_max_shards then
    return nil, UNKNOWN
  end
  local restored_group_size = claimed_shards_per_process
  -- Take the id out of the free-id index (see connect.lua).
  local next_key = gen_key(generation, 'next')
  local next_id = tonumber(redis.call('GET', next_key) or '0')
  if shard_id >= next_id then
    for id = next_id, shard_id - 1, restored_group_size do
      if redis.call('EXISTS', gen_key(generation, 'lease', id)) == 0 then
        redis.call('ZADD', gen_key(generation, 'free'), id, id)
      end
    end
    redis.call('SET', next_key, shard_id + restored_group_size)
  else
    redis.call('ZREM', gen_key(generation, 'free'), shard_id)
  end
  if (tonumber(redis.call('GET', fence_key)) or 0) < claimed_fence then
    redis.call('SET', fence_key, claimed_fence)
  end
  redis.call('HSET', lease_key, 'n', nonce, 'f', claimed_fence, 't', now, 'b', beaten)
  redis.call('PEXPIRE', lease_key, lease_ms)
  return tostring(claimed_fence)
end

-- A holder of the pending generation is ready for the first time: counts it (one ready member per
-- group, its first shard id) and returns whether every group of the generation now has a holder
-- that is ready still (a member whose holder is gone, or no longer ready, is dropped).
local function mark_ready(generation, shard_id, max_shards, group_size)
  local ready_key = gen_key(generation, 'ready')
  redis.call('SADD', ready_key, shard_id)
  if redis.call('SCARD', ready_key) < math.ceil(max_shards / group_size) then
    return false
  end
  local complete = true
  for _, id in ipairs(redis.call('SMEMBERS', ready_key)) do
    if redis.call('HGET', gen_key(generation, 'lease', id), 'b') ~= '1' then
      redis.call('SREM', ready_key, id)
      complete = false
    end
  end
  return complete
end

-- Makes the pending generation the active one, in this one step: the old generation's sessions
-- are retired from their next beat on (beats later in this batch included).
local function complete_reshard(generation, max_shards, group_size)
  local old_generation = plan.generation
  redis.call('HSET', plan_key, 'generation', generation, 'max_shards', max_shards,
    'shards_per_process', group_size)
  redis.call('HDEL', plan_key, 'pending_generation', 'pending_max_shards',
    'pending_shards_per_process')
  plan.generation, plan.max_shards = tostring(generation), tostring(max_shards)
  plan.shards_per_process = tostring(group_size)
  plan.pending_generation, plan.pending_max_shards, plan.pending_shards_per_process = false, false, false
  redis.call('DEL', gen_key(generation, 'ready'))
  -- The old generation's sessions now get 401 and stop beating; its index can go with them.
  for _, suffix in ipairs({'next', 'free', 'deadlines', 'reports'}) do
    redis.call('PEXPIRE', gen_key(old_generation, suffix), lease_ms)
  end
  queue_event(events_key, 'reshard_completed', -1, generation, max_shards, now)
end

-- One beat, the fields of which start at ARGV[at]; returns its answer.
local function beat(at)
  local nonce = ARGV[at]
  local guild_count = ARGV[at + 1]
  local latency = ARGV[at + 2]
  local extra = ARGV[at + 3]
  local resume = ARGV[at + 4]
  local shard_id = tonumber(ARGV[at + 5])
  local generation = tonumber(ARGV[at + 6])
  -- Only a lease lost with Redis's data needs these claims; they stay text until then.
  local claimed_max_shards = ARGV[at + 7]
  local claimed_fence = ARGV[at + 8]
  local claimed_epoch = ARGV[at + 9]
  local claimed_shards_per_process = ARGV[at + 10]
  local shard_reports = ARGV[at + 11]
  local shard_resumes = ARGV[at + 12]
  local ready = ARGV[at + 13] == '1'
  local events = ARGV[at + 14]
  local cpu_seconds = ARGV[at + 15]
  local rss_bytes = ARGV[at + 16]
  local process = ARGV[at + 17]

  -- The ids' own decimal texts name the keys, so Redis formats no number for them.
  local lease_key = gen_key(ARGV[at + 6], 'lease', ARGV[at + 5])
  -- The lease's holder (n), fence (f), beaten while ready (b), IDENTIFY slot (w), stored resume
  -- data (r), last beat (t), guild count (g), the first shard's and the process's load counters
  -- (e, c), the process it is marked to move to (v), its silent shards to reconnect (q) and its
  -- process label (p); false where unset.
  local holder, fence, beaten, slot_ms, stored_resume, last_beat_ms, leased_guilds, events_counter,
    cpu_counter, moving_to, to_reconnect, leased_process = unpack(redis.call('HMGET', lease_key, 'n',
    'f', 'b', 'w', 'r', 't', 'g', 'e', 'c', 'v', 'q', 'p'))
  if holder and holder ~= nonce then
    return UNKNOWN -- the id is held by another session
  end
  if not holder then
    beaten = ready and '1' or '0'
    local refusal
    fence, refusal = reestablish_lease(lease_key, nonce, shard_id, generation, beaten,
      claimed_max_shards, claimed_fence, claimed_epoch, claimed_shards_per_process)
    if not fence then
      return refusal
    end
    -- A new lease: no slot, no resume data, no counters, and no last beat, so the deadline below
    -- is set whatever the window.
    slot_ms, stored_resume, last_beat_ms, events_counter, cpu_counter = false, false, false, false, false
  end

  local state, max_shards, group_size, max_shards_text
  if tonumber(plan.generation) == generation and shard_id < tonumber(plan.max_shards) then
    state, max_shards = 'active', tonumber(plan.max_shards)
    group_size, max_shards_text = tonumber(plan.shards_per_process) or 1, plan.max_shards
  elseif plan.pending_generation and tonumber(plan.pending_generation) == generation then
    state, max_shards = 'standby', tonumber(plan.pending_max_shards)
    group_size, max_shards_text = tonumber(plan.pending_shards_per_process) or 1, plan.pending_max_shards
  else
    return answer(-1, shard_id, tonumber(plan.max_shards) or 0, generation, fence, 'retired')
  end

  -- Never shorter than the IDENTIFY slot the lease was booked for plus a lease (see connect.lua).
  slot_ms = tonumber(slot_ms)
  if slot_ms and slot_ms > now then
    -- Its deadline, slot_ms + lease_ms, is in `deadlines` already: whoever books a slot
    -- (connect.lua, identify.lua) writes both.
    redis.call('PEXPIRE', lease_key, slot_ms + lease_ms - now)
  else
    redis.call('PEXPIRE', lease_key, lease_ms_text)
    -- `deadlines` only has to be a lower bound of each lease's expiry (reclaim_expired checks the
    -- lease's own TTL before it frees an id), so only the first beat of each half lease moves it,
    -- to this beat's deadline: it then stays more than half a lease ahead of every beat.
    last_beat_ms = tonumber(last_beat_ms)
    if not last_beat_ms or math.floor(last_beat_ms / half_lease_ms) ~= beat_window then
      redis.call('ZADD', gen_key(ARGV[at + 6], 'deadlines'), deadline_text, ARGV[at + 5])
    end
  end
  local group_end = math.min(shard_id + group_size, max_shards)
  if (guild_count ~= '' and guild_count ~= leased_guilds) or shard_reports ~= '' then
    carry_reports(ARGV[at + 6], lease_key, shard_id, group_end, guild_count, latency,
      leased_guilds, shard_reports)
  end
  set_field(lease_key, 't', now_text)
  if ready and beaten ~= '1' then set_field(lease_key, 'b', 1) end
  if guild_count ~= '' then set_field(lease_key, 'g', guild_count) end
  if latency ~= '' then set_field(lease_key, 'l', latency) end
  if extra ~= '' then set_field(lease_key, 'x', extra) end

  if rss_bytes ~= '' then set_field(lease_key, 'm', rss_bytes) end
  if process ~= '' and not leased_process then set_field(lease_key, 'p', process) end

  -- Load counters to move on: lease field -> the counter reported.
  local counters = {}
  if events ~= '' then counters.e = events end
  if cpu_seconds ~= '' then counters.c = cpu_seconds end
  if shard_reports ~= '' then
    set_shard_reports(lease_key, shard_reports, shard_id, group_end, counters)
  end
  update_load_counters(lease_key, counters, {e = events_counter, c = cpu_counter})
  local new_resumes
  if resume ~= '' or shard_resumes ~= '' then
    new_resumes = reported_resumes(resume, shard_resumes, shard_id, group_end)
  end
  if new_resumes and stored_resume ~= '1' then
    set_field(lease_key, 'r', 1)
  end
  flush_fields(lease_key)
  -- Resume keys exist only once this session stored some (a grant takes its predecessor's).
  if new_resumes or stored_resume == '1' then
    keep_resumes(generation, shard_id, group_end, new_resumes)
  end

  if state == 'standby' and ready and beaten ~= '1'
    and mark_ready(generation, shard_id, max_shards, group_size) then
    complete_reshard(generation, max_shards, group_size)
    state = 'active'
  end
  local reconnect = ''
  if to_reconnect then
    -- Told once: mark_silent.lua asks again if the shard stays silent.
    redis.call('HDEL', lease_key, 'q')
    reconnect = ' reconnect ' .. to_reconnect
  end
  -- All text: one concatenation, no table.
  return '1 ' .. ARGV[at + 5] .. ' ' .. max_shards_text .. ' ' .. ARGV[at + 6] .. ' ' .. fence .. ' '
    .. state .. (moving_to and ' move' or '') .. reconnect
end

local answers = {}
for at = FIRST_BEAT, #ARGV, BEAT_FIELDS do
  answers[#answers + 1] = beat(at)
end
return table.concat(answers, '\n')
