--[[
  audit-snapshot: Redis's terms of the invariant for one promotion, read at one point (a script runs alone).
  Read-only, so repeating it is harmless. Its cost grows with the requests in flight (XRANGE of the stream):
  an admin's check, not a hot path.

  KEYS[1] meta hash  (totalStock, perUserLimit)
  KEYS[2] stock
  KEYS[3] seq        (reservations made so far)
  KEYS[4] stream     (entries: r requestId, u userId, ...)

  Returns { totalStock, remainingStock, perUserLimit, reservations, requestId1, userId1, requestId2, ... },
  or {} when the promotion has no counters in Redis (unknown, retired or lost).
]]

local meta = redis.call('HMGET', KEYS[1], 'totalStock', 'perUserLimit')
local stock = redis.call('GET', KEYS[2])
if not meta[1] or not stock then
  return {}
end
local reply = { tonumber(meta[1]), tonumber(stock), tonumber(meta[2]), tonumber(redis.call('GET', KEYS[3]) or '0') }
for _, entry in ipairs(redis.call('XRANGE', KEYS[4], '-', '+')) do
  local fields = entry[2]
  local r, u = '', ''
  for i = 1, #fields, 2 do
    if fields[i] == 'r' then r = fields[i + 1] elseif fields[i] == 'u' then u = fields[i + 1] end
  end
  reply[#reply + 1] = r
  reply[#reply + 1] = u
end
return reply
