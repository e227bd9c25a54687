--[[
  fail: a queued request could never be stored. Mark it FAILED, give its stock and the user's count
  back, copy it to the dead-letter stream, publish the final state, then XACK and XDEL it.
  Repeating it is harmless: a request already final (ISSUED or FAILED) gives nothing back twice.

  KEYS[1] the promotion's stream
  KEYS[2] the promotion's dead-letter stream
  KEYS[3] stock
  KEYS[4] the request's status hash
  KEYS[5] the user's hash (n, last)

  ARGV[1] consumer group
  ARGV[2] status TTL, ms
  ARGV[3] entryId
  ARGV[4] channel (sharded, in the promotion's slot: SPUBLISH)
  ARGV[5] message (published as is)
  ARGV[6] requestId
  ARGV[7] userId
  ARGV[8] requestedAt (ms)
  ARGV[9] failure reason

  The status hash's field names come from the table STATUS (issuance-codec.ts, put in front by scripts.ts).

  Returns 1 when this call made the request FAILED, 0 when it was already final.
]]

local state = redis.call('HGET', KEYS[4], STATUS.status)
local changed = 0
if state ~= 'ISSUED' and state ~= 'FAILED' then
  redis.call('INCR', KEYS[3])
  if tonumber(redis.call('HGET', KEYS[5], 'n') or '0') > 0 then
    redis.call('HINCRBY', KEYS[5], 'n', -1)
  end
  redis.call('HSET', KEYS[4], STATUS.status, 'FAILED', STATUS.userId, ARGV[7], STATUS.requestedAt, ARGV[8],
    STATUS.failureReason, ARGV[9])
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[6], 'u', ARGV[7], 't', ARGV[8], 'reason', ARGV[9])
  redis.call('SPUBLISH', ARGV[4], ARGV[5])
  changed = 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return changed
