--[[
mark_silent.lua: mark shards silent, as the silence job found them (src/jobs/silence.rs,
src/domain/silence.rs: a held shard whose events counter has stood still for silent_after_ms
while the fleet has traffic). A silent shard's episode begins when its counter stopped: the first
mark of an episode queues one shard_silent alert and asks its holder to reconnect it; while the
episode lasts, the holder is asked again every silent_after_ms. The holder is told by its next beat
(beat.lua: " reconnect <ids>"), which clears the ask. The episode ends when the counter moves
(beat.lua gives its load counter a new time) or the lease ends (a new holder starts afresh).

A mark is made only when it is still what the job saw: the lease is held by the same fence, and the
shard's counter (lease field e for the group's first shard, e:<id> for the others, see beat.lua's
"Load counters") still stands still since the same time.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  events_key      (list, see connect.lua)
ARGV[5]  generation      the generation whose shards are silent
ARGV[6]  max_shards      that generation's shard count (for the alert)
ARGV[7]  silent_after_ms how long a counter stands still before its shard is silent
ARGV[8]  silent          one line per silent shard, "<shard_id>\t<its group's first id>\t<fence>\t
                         <ms its counter stood still since>"

Lease fields (includes/common.lua): s (s:<id> for a group's other shards) = "<still since ms>
<ms last asked>", the shard's episode; q = the ids its holder is to be asked to reconnect, comma
separated.

Returns  the number of silent episodes that began (alerts queued when events are enabled).
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(S) for S silent shards: one HMGET per shard, one HSET per ask.
]]
local events_key = KEYS[2]
local generation = ARGV[5]
local max_shards = ARGV[6]
local silent_after_ms = tonumber(ARGV[7])
local silent = ARGV[8]

local now = now_ms()
local began = 0
for line in string.gmatch(silent, '[^\n]+') do
  local id, first, fence, since = string.match(line, '^(%d+)\t(%d+)\t(%d+)\t(%d+)$')
  if id then
    local suffix = id == first and '' or (':' .. id)
    local lease_key = gen_key(generation, 'lease', first)
    local held_fence, counter, episode, asked = unpack(redis.call('HMGET', lease_key, 'f',
      'e' .. suffix, 's' .. suffix, 'q'))
    local still_since = counter and string.match(counter, '^%S+ (%d+) ')
    if held_fence == fence and still_since == since then
      local episode_since, told = string.match(episode or '', '^(%d+) (%d+)$')
      local ask = false
      if episode_since ~= since then
        queue_event(events_key, 'shard_silent', tonumber(id), generation, max_shards, now)
        began = began + 1
        ask = true
      elseif now - tonumber(told) >= silent_after_ms then
        ask = true
      end
      if ask then
        local ids = id
        if asked and not string.find(',' .. asked .. ',', ',' .. id .. ',', 1, true) then
          ids = asked .. ',' .. id
        elseif asked then
          ids = asked
        end
        redis.call('HSET', lease_key, 's' .. suffix, since .. ' ' .. now, 'q', ids)
      end
    end
  end
end
return began
