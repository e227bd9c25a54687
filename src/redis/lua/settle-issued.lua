--[[
  settle-issued: after a rebuild, set the issued counter to PostgreSQL's count once nothing is in flight.
  A rebuild sets the counter from a count read while the consumer may have been between a batch's commit and
  its confirmation, so the counter can be off by that batch; once the queue is empty and the counter has not
  moved since it was read (no confirmation in between), PostgreSQL's count, read in between, is exact.
  Repeating it is harmless: it does nothing once settled, and refuses while anything could still move it.

  KEYS[1] meta hash (field recount = 1: the counter awaits this check)
  KEYS[2] stream
  KEYS[3] issued counter

  ARGV[1] the counter as read before PostgreSQL was counted ("" when it was missing)
  ARGV[2] PostgreSQL's count of the promotion's coupons

  Returns 1 when the counter was settled (set, the flag removed), 0 when there was nothing to settle,
  -1 when requests are in flight or the counter moved meanwhile (try again later).
]]

if redis.call('HGET', KEYS[1], 'recount') ~= '1' then
  return 0
end
if redis.call('XLEN', KEYS[2]) > 0 then
  return -1
end
local current = redis.call('GET', KEYS[3]) or ''
if current ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[1], 'recount')
return 1
