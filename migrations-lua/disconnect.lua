--[[
disconnect.lua: release a session's shard at once, so the next /connect can take it.

The holder's resume data (if it sent any) stays for the resume window, so the next claimant of the
same shard id of the same generation can RESUME instead of IDENTIFY.

KEYS[1]  events  (list, see connect.lua)
KEYS[2]  schema  (string: the key-schema version; see init.lua)
ARGV[1]  key base, e.g. "{shardman}:"
ARGV[2]  the session's nonce (from its signed session id)
ARGV[3]  resume window in milliseconds (RESUME_WINDOW * 1000)
ARGV[4]  1 to queue events for the webhook, 0 not to
ARGV[5]  the session's shard id (from its signed session id)
ARGV[6]  the session's generation (from its signed session id)
ARGV[7]  key-schema version this replica knows (integer)

Returns  1 when the session existed and its shard id is free again; 0 when no such session.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(log N).
]]
local events_key = KEYS[1]
local schema_key = KEYS[2]
local base = ARGV[1]
local session_id = ARGV[2]
local resume_window_ms = tonumber(ARGV[3])
local events_enabled = ARGV[4] == '1'
local shard_id = ARGV[5]
local generation = ARGV[6]
local known_schema = tonumber(ARGV[7])

local newer = newer_schema(schema_key, known_schema)
if newer then
  return redis.error_reply('SCHEMA_TOO_NEW ' .. newer)
end

local gen_base = base .. 'g:' .. generation .. ':'
local lease_key = gen_base .. 'lease:' .. shard_id
if redis.call('HGET', lease_key, 'n') ~= session_id then
  return 0
end
redis.call('DEL', lease_key)
redis.call('ZREM', gen_base .. 'deadlines', shard_id)
redis.call('ZADD', gen_base .. 'free', shard_id, shard_id)
redis.call('SREM', gen_base .. 'ready', shard_id)
redis.call('PEXPIRE', gen_base .. 'resume:' .. shard_id, resume_window_ms)
queue_event(events_key, events_enabled, 'disconnect', shard_id, generation, -1, now_ms())
return 1
