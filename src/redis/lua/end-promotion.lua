--[[
  end-promotion: stop issuance now. The very next issue call answers ENDED.

  KEYS[1] meta hash

  ARGV[1] endedAt (ms)

  Returns 1 when ended by this call, 0 when it had already ended early, -1 when the meta is missing.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('HSETNX', KEYS[1], 'endedAt', ARGV[1])
