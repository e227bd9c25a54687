--[[
  retire: once a promotion has ended (a grace period ago) and its queue is empty, let its stock, sequence
  and streams expire, so Redis memory stays bounded. The meta hash stays, a tombstone of about a hundred
  bytes, so issue keeps answering ENDED (not NOT_FOUND). The caller then drops the promotion from the
  consumers' registry.

  KEYS[1] meta hash
  KEYS[2] stock
  KEYS[3] seq
  KEYS[4] stream
  KEYS[5] dead-letter stream

  ARGV[1] consumer group
  ARGV[2] grace after the end, ms
  ARGV[3] TTL to set on the keys, ms

  Returns 1 when retired (or already gone), 0 when the promotion is still running or has requests in flight.
]]

local meta = redis.call('HMGET', KEYS[1], 'endsAt', 'endedAt')
if not meta[1] then
  return 1
end
local endAt = tonumber(meta[1])
if meta[2] and tonumber(meta[2]) < endAt then
  endAt = tonumber(meta[2])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < endAt + tonumber(ARGV[2]) then
  return 0
end
if redis.call('XLEN', KEYS[4]) > 0 then
  return 0
end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[4], ARGV[1])
if ok and tonumber(pending[1]) > 0 then
  return 0
end
for i = 2, 5 do
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
return 1
