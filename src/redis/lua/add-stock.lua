--[[
  add-stock: make more stock of a promotion available, effective for the very next issue call.

  KEYS[1] meta hash
  KEYS[2] stock

  ARGV[1] amount (> 0)

  Returns { remainingStock, totalStock } after the addition, or -1 when the promotion's meta is missing.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local total = redis.call('HINCRBY', KEYS[1], 'totalStock', ARGV[1])
local remaining = redis.call('INCRBY', KEYS[2], ARGV[1])
return { remaining, total }
