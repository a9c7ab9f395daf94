--[[
fleet_page.lua: read one page of a generation's held shards, for /status, metrics and autoscaling.
Read-only. Callers walk the id range page by page, so Redis is never blocked for long even with
65,536 shards; the pages together are not one atomic snapshot (fine for a scrape).

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
KEYS[2]  plan_key  (hash: generation, max_shards, pending_generation, pending_max_shards); only
                   read, to keep the script's keys declared and in the deployment's hash slot
ARGV[5]  generation     generation to read (integer)
ARGV[6]  first          first shard id of the page (integer >= 0)
ARGV[7]  count          number of shard ids in the page (integer >= 1)
ARGV[8]  group_size     shards per process of that generation (see connect.lua): a shard's lease is
                        its group's
ARGV[9]  shard_figures  the figures to read that each shard of a group has its own of, as the
                        lease fields beats write them (beat.lua's header), space separated: "g l"
                        reads g and l for a group's first shard, g:<id> and l:<id> for the others
ARGV[10] lease_figures  the figures to read that the group's shards share, space separated ("x")

Keys built with gen_key: g:<gen>:lease:<id> (hash, see includes/common.lua).

Returns  one row per live lease in [first, first + count), by shard id:
           {shard_id, last_beat (ms of Redis time), beaten (0/1), fence, then the shard_figures'
            and the lease_figures' texts in the order asked, each nil when the lease has none}
Errors   none of its own.
Cost     O(count): one HMGET per id.
]]
local plan_key = KEYS[2]
local generation = ARGV[5]
local first = tonumber(ARGV[6])
local count = tonumber(ARGV[7])
local group_size = tonumber(ARGV[8])
local shard_figures = ARGV[9]
local lease_figures = ARGV[10]

-- The lease fields of one shard's row: its lease's t, b and f, then the figures asked for.
local BOOKKEEPING = {'t', 'b', 'f'}
local function row_fields(id, group_first)
  local fields = {unpack(BOOKKEEPING)}
  for name in string.gmatch(shard_figures, '%S+') do
    if id == group_first then
      fields[#fields + 1] = name
    else
      fields[#fields + 1] = name .. ':' .. id
    end
  end
  for name in string.gmatch(lease_figures, '%S+') do
    fields[#fields + 1] = name
  end
  return fields
end
-- A group's first shard reads the same fields whatever its id: made once.
local first_shard_fields = row_fields(0, 0)

local rows = {}
for id = first, first + count - 1 do
  local group_first = id - id % group_size
  local fields = first_shard_fields
  if id ~= group_first then
    fields = row_fields(id, group_first)
  end
  local values = redis.call('HMGET', gen_key(generation, 'lease', group_first), unpack(fields))
  if values[1] then
    local row = {id, tonumber(values[1]), tonumber(values[2]) or 0, tonumber(values[3]) or 0}
    for index = #BOOKKEEPING + 1, #fields do
      row[#row + 1] = values[index]
    end
    rows[#rows + 1] = row
  end
end
return rows
