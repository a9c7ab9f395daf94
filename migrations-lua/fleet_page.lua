--[[
fleet_page.lua: read one page of a generation's held shards, for /status, metrics and autoscaling.
Read-only. Callers walk the id range page by page, so Redis is never blocked for long even with
65,536 shards; the pages together are not one atomic snapshot (fine for a scrape).

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key  (hash: generation, max_shards, pending_generation, pending_max_shards); only
                   read, to keep the script's keys declared and in the deployment's hash slot
ARGV[5]  generation  generation to read (integer)
ARGV[6]  first       first shard id of the page (integer >= 0)
ARGV[7]  count       number of shard ids in the page (integer >= 1)
ARGV[8]  with_extra  1 to include each shard's extra, 0 not to
ARGV[9]  group_size  shards per process of that generation (see connect.lua): a shard's lease is
                     its group's, its figures the lease's g:<id> and l:<id> (g, l for the first)

Keys built with gen_key: g:<gen>:lease:<id> (hash, see connect.lua).

Returns  one row per live lease in [first, first + count), by shard id:
           {shard_id, last_beat (ms of Redis time), beaten (0/1), fence, guild_count or nil,
            latency text or nil, extra JSON text or nil}
Errors   none of its own.
Cost     O(count): one HMGET per id.
]]
local plan_key = KEYS[2]
local generation = ARGV[5]
local first = tonumber(ARGV[6])
local count = tonumber(ARGV[7])
local with_extra = ARGV[8] == '1'
local group_size = tonumber(ARGV[9])

local rows = {}
for id = first, first + count - 1 do
  local group_first = id - id % group_size
  local guilds, seconds = 'g', 'l'
  if id ~= group_first then
    guilds, seconds = 'g:' .. id, 'l:' .. id
  end
  local fields = redis.call('HMGET', gen_key(generation, 'lease', group_first), 't', 'b', 'f', guilds,
    seconds, 'x')
  if fields[1] then
    local extra = false
    if with_extra then extra = fields[6] end
    rows[#rows + 1] = {id, tonumber(fields[1]), tonumber(fields[2]) or 0, tonumber(fields[3]) or 0,
      fields[4], fields[5], extra}
  end
end
return rows
