--[[
mark_moves.lua: mark shards to move to other processes (SHARDS_PER_PROCESS=auto), as the placement
job decided (src/jobs/placement.rs, src/domain/placement.rs). A marked shard's holder is told so by
its beats (beat.lua: "move"), hands the shard over with its resume data and releases it
(disconnect.lua), which reserves it for the process it moves to (includes/common.lua); that process
claims it with its next /connect and RESUMEs.

A move is marked only when it is still what the job saw: the lease is held by a session of process
`from`, ready, not marked already, and did not arrive by a move less than settle_ms ago (a shard is
never moved twice within the settling time). At most max_moving moves are under way at once
(marked, or handed over and reserved). A mark older than two leases is dropped: its holder does not
hand shards over (an older client), so the shard stays where it is.

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
ARGV[5]  generation  the generation whose shards move
ARGV[6]  settle_ms   how long a shard that arrived by a move stays where it is, in milliseconds
ARGV[7]  max_moving  moves under way at most
ARGV[8]  moves       one line per move, "<shard_id>\t<from label>\t<to label>" (labels have no tab
                     or newline: /connect refuses control characters)

Returns  the number of moves marked.
Errors   "SCHEMA_TOO_NEW <found>" when a newer build raised the schema: nothing changed.
Cost     O(M log N) for M moves, plus O(log N) per mark dropped.
]]
local generation = ARGV[5]
local settle_ms = tonumber(ARGV[6])
local max_moving = tonumber(ARGV[7])
local moves = ARGV[8]

local now = now_ms()
local moving_key = gen_key(generation, 'moving')
for _, id in ipairs(redis.call('ZRANGEBYSCORE', moving_key, '-inf', now - 2 * lease_ms)) do
  redis.call('ZREM', moving_key, id)
  redis.call('HDEL', gen_key(generation, 'lease', id), 'v')
end
release_lapsed_reservations(generation, now)
local room = max_moving - redis.call('ZCARD', moving_key)
  - redis.call('ZCARD', gen_key(generation, 'reserved'))

local marked = 0
for line in string.gmatch(moves, '[^\n]+') do
  if marked >= room then
    break
  end
  local id, from, to = string.match(line, '^(%d+)\t([^\t]+)\t([^\t]+)$')
  if id then
    local lease_key = gen_key(generation, 'lease', id)
    local process, beaten, moving_to, arrived = unpack(redis.call('HMGET', lease_key, 'p', 'b', 'v', 'a'))
    if process == from and beaten == '1' and not moving_to
      and (not arrived or now - tonumber(arrived) >= settle_ms) then
      redis.call('HSET', lease_key, 'v', now .. ' ' .. to)
      redis.call('ZADD', moving_key, now, id)
      marked = marked + 1
    end
  end
end
return marked
