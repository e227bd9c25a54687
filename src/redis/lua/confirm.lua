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

  Returns the number of entries acknowledged.
]]

local group, ttl = ARGV[1], ARGV[2]
local ids = {}
local n = (#ARGV - 2) / 8

for i = 0, n - 1 do
  local a = 3 + i * 8
  local statusKey = KEYS[2 + i]
  local state = redis.call('HGET', statusKey, 's')
  if state ~= 'ISSUED' and state ~= 'FAILED' then
    redis.call('HSET', statusKey, 's', 'ISSUED', 'u', ARGV[a + 3], 't', ARGV[a + 4],
      'c', ARGV[a + 5], 'k', ARGV[a + 6], 'i', ARGV[a + 7])
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
