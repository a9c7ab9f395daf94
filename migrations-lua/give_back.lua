--[[
give_back.lua: undo a grant whose answer could not be delivered (its client hung up while the
replica was claiming for it): free the group at once, as disconnect.lua does, and put back the
resume data the grant had taken, so that the next claimant RESUMEs instead of IDENTIFYing.

The IDENTIFY slots the grant booked stay booked (the next claimant's slot may come one interval
later) and its identifies stay counted against the daily budget: both err on the safe side.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  events_key  (list, see connect.lua)
ARGV[5]  nonce             the grant's session nonce
ARGV[6]  shard_id          the grant's first shard id
ARGV[7]  generation        the grant's generation
ARGV[8]  resume_window_ms  how long the resume data put back is kept (RESUME_WINDOW * 1000)
ARGV[9]  resumes           the resume JSON the grant handed over, per shard of its group from the
                           first, each entry followed by the unit separator (byte 31, which JSON
                           text never holds raw); an empty entry for a shard without resume data

Returns  1 when the grant still held its group, which is free again; 0 when it was gone already.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(log N).
]]
local events_key = KEYS[2]
local nonce = ARGV[5]
local shard_id = ARGV[6]
local generation = ARGV[7]
local resume_window_ms = tonumber(ARGV[8])
local resumes = ARGV[9]

local lease_key = gen_key(generation, 'lease', shard_id)
if redis.call('HGET', lease_key, 'n') ~= nonce then
  return 0
end
redis.call('DEL', lease_key)
redis.call('ZREM', gen_key(generation, 'deadlines'), shard_id)
redis.call('ZADD', gen_key(generation, 'free'), shard_id, shard_id)
redis.call('SREM', gen_key(generation, 'ready'), shard_id)
local id = tonumber(shard_id)
for resume in string.gmatch(resumes, '([^\31]*)\31') do
  if resume ~= '' then
    redis.call('SET', gen_key(generation, 'resume', id), resume, 'PX', resume_window_ms)
  end
  id = id + 1
end
queue_event(events_key, 'disconnect', shard_id, generation, -1, now_ms())
return 1
