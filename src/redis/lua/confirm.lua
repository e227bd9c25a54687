--[[
  confirm: after the batch's coupons are committed in PostgreSQL, mark each request ISSUED,
  publish its confirmation, then XACK and XDEL its stream entry, in that order, atomically.
  Repeating it is harmless: a request already final (ISSUED, or FAILED by another consumer) is neither
  rewritten nor published again; its entry is still acknowledged.

  KEYS[1]         the promotion's stream
  KEYS[2..n+1]    the status hash of each request, in the order of the entries in ARGV

  ARGV[1] consumer group
  ARGV[2] status TTL, ms
  then 8 values per entry:
    entryId, channel, message (published as is), userId, requestedAt (ms), couponId, code, issuedAt (ms)

  The status hash's field names come from the table STATUS (issuance-codec.ts, put in front by scripts.ts).

  Returns the number of entries acknowledged.
]]

local group, ttl = ARGV[1], ARGV[2]
local ids = {}
local n = (#ARGV - 2) / 8

for i = 0, n - 1 do
  local a = 3 + i * 8
  local statusKey = KEYS[2 + i]
  local state = redis.call('HGET', statusKey, STATUS.status)
  if state ~= 'ISSUED' and state ~= 'FAILED' then
    redis.call('HSET', statusKey, STATUS.status, 'ISSUED', STATUS.userId, ARGV[a + 3], STATUS.requestedAt, ARGV[a + 4],
      STATUS.couponId, ARGV[a + 5], STATUS.code, ARGV[a + 6], STATUS.issuedAt, ARGV[a + 7])
    redis.call('PEXPIRE', statusKey, ttl)
    redis.call('PUBLISH', ARGV[a + 1], ARGV[a + 2])
  end
  ids[#ids + 1] = ARGV[a]
end

if #ids == 0 then
  return 0
end
local acked = redis.call('XACK', KEYS[1], group, unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
return acked
