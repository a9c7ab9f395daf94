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
ARGV[10] lease_figures  the figures to read that the group's shards share, space separated ("x p c
                        m": extra, and the process's label, CPU and memory)

Keys built with gen_key: g:<gen>:lease:<id> (hash, see includes/common.lua) and g:<gen>:reports
(hash: the per-shard figures each shard's holders last reported, <figure>:<shard id>, kept beyond
the lease by beat.lua and disconnect.lua so that a handover does not lose them).

Returns  one row per live lease in [first, first + count), by shard id:
           {shard_id, last_beat (ms of Redis time), beaten (0/1), fence, then the shard_figures'
            and the lease_figures' texts in the order asked, each nil when the lease has none}
         A shard figure its holder has not reported yet is the one its previous holders last
         reported (from reports). An id that nobody holds but whose previous holders reported
         shard figures has a row too, with last_beat -1, beaten 0, fence 0 and those figures (its
         guilds still exist: autoscale counts them through a handover).
Errors   none of its own.
Cost     O(count): one HMGET per id, and one HMGET of reports per page.
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

-- The page's carried figures: carried[(id - first) * #names + n] is shard id's n-th shard figure.
local names = {}
for name in string.gmatch(shard_figures, '%S+') do
  names[#names + 1] = name
end
local carried = {}
local reports_key = gen_key(generation, 'reports')
if #names > 0 and redis.call('EXISTS', reports_key) == 1 then
  local wanted = {}
  for id = first, first + count - 1 do
    for _, name in ipairs(names) do
      wanted[#wanted + 1] = name .. ':' .. id
    end
  end
  carried = redis.call('HMGET', reports_key, unpack(wanted))
end

local rows = {}
for id = first, first + count - 1 do
  local group_first = id - id % group_size
  local fields = first_shard_fields
  if id ~= group_first then
    fields = row_fields(id, group_first)
  end
  local values = redis.call('HMGET', gen_key(generation, 'lease', group_first), unpack(fields))
  local at = (id - first) * #names
  if values[1] then
    local row = {id, tonumber(values[1]), tonumber(values[2]) or 0, tonumber(values[3]) or 0}
    for index = #BOOKKEEPING + 1, #fields do
      local figure = index - #BOOKKEEPING
      row[#row + 1] = values[index] or (figure <= #names and carried[at + figure]) or false
    end
    rows[#rows + 1] = row
  else
    local row, reported = {id, -1, 0, 0}, false
    for figure = 1, #names do
      row[#row + 1] = carried[at + figure] or false
      reported = reported or carried[at + figure]
    end
    for _ in string.gmatch(lease_figures, '%S+') do
      row[#row + 1] = false
    end
    if reported then
      rows[#rows + 1] = row
    end
  end
end
return rows
