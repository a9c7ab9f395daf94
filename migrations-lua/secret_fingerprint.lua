--[[
secret_fingerprint.lua: compare this replica's secret for the bot with the deployment's, by
fingerprints (an HMAC of a fixed message under a key derived from the secret; never the secret),
and move the deployment's record along a rotation (README, "Rotating the secret"). Every replica
runs it at start and every few seconds; the in-process store does not (it is one process).

KEYS[1], ARGV[1..4]: the envelope (schema_key; base, known_schema, events_enabled, lease_ms), see
includes/common.lua.
ARGV[5]  current   fingerprint of this replica's SECRET
ARGV[6]  previous  fingerprint of its SECRET_PREVIOUS, or "" without one

The record is kept at secrets (hash: current, previous = the deployment's fingerprints; previous
only during a rotation). In this order:
  no record                              created: {current, previous} (the first writer wins, also
                                         after a data loss)
  no previous of its own, current = the  cleared: the record becomes {current}. The rotation is
  record's current or previous, and the  over (its third phase), and a record a replica of its
  record has a previous                  first phase created (after a data loss, or a deployment
                                         started mid-rotation) ends in the right place too
  current = record's current             accepted
  current = record's previous            accepted (a replica not yet rolled forward)
  previous = record's current, and the   advanced: the record becomes {current, previous} (the
  record has no previous                 first replica of a rotation's second phase; one rotation
                                         at a time, so no replica still on the record's previous
                                         secret is left behind)
  anything else                          refused: this replica runs another secret

Returns  {verdict, record_current, record_previous}: verdict one of created, accepted, cleared,
         advanced, refused; the record as it is afterwards ("" for no previous).
Errors   none of its own.
Cost     O(1).
]]
local current = ARGV[5]
local previous = ARGV[6]
local record_key = key('secrets')

local record = redis.call('HMGET', record_key, 'current', 'previous')
local record_current, record_previous = record[1], record[2] or ''

if not record_current then
  redis.call('HSET', record_key, 'current', current)
  if previous ~= '' then
    redis.call('HSET', record_key, 'previous', previous)
  end
  return {'created', current, previous}
end
if previous == '' and record_previous ~= '' and (current == record_current or current == record_previous) then
  redis.call('HSET', record_key, 'current', current)
  redis.call('HDEL', record_key, 'previous')
  return {'cleared', current, ''}
end
if current == record_current or (record_previous ~= '' and current == record_previous) then
  return {'accepted', record_current, record_previous}
end
if previous ~= '' and previous == record_current and record_previous == '' then
  redis.call('HSET', record_key, 'current', current, 'previous', previous)
  return {'advanced', current, previous}
end
return {'refused', record_current, record_previous}
