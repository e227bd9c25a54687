--[[
  add-stock: raise a promotion's total stock to the total PostgreSQL holds, effective for the very next issue
  call. The caller passes the ABSOLUTE new total, never an amount, so the script converges whatever happens to
  the calls: applied twice, late, or out of order (a smaller total after a larger one), it changes nothing more.

  KEYS[1] meta hash
  KEYS[2] stock

  ARGV[1] the promotion's total stock in PostgreSQL, additions included

  When meta.totalStock < ARGV[1]: stock += ARGV[1] - meta.totalStock and meta.totalStock = ARGV[1].
  Otherwise nothing (a total never goes down).

  Returns { remainingStock, totalStock } after the call, or -1 when the promotion's meta is missing.
  Repeating it is harmless: a total already reached adds nothing.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local target = tonumber(ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[1], 'totalStock')) or 0
if total < target then
  redis.call('HSET', KEYS[1], 'totalStock', target)
  local remaining = redis.call('INCRBY', KEYS[2], target - total)
  return { remaining, target }
end
return { tonumber(redis.call('GET', KEYS[2])) or 0, total }
