--[[
  end-promotion: stop issuance now. The very next issue call answers ENDED. Redis is written before
  PostgreSQL (the safe direction: if the second write fails, issuance has stopped anyway), and PostgreSQL then
  stores the end time this script returns, so both stores hold the same one.

  KEYS[1] meta hash

  ARGV[1] endedAt (ms), used only when the promotion has not ended early yet

  Returns the promotion's endedAt (ms, as a string): ARGV[1], or the earlier one when it had already ended
  early; -1 when the meta is missing.
  Repeating it is harmless: the first end time is kept and returned again.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSETNX', KEYS[1], 'endedAt', ARGV[1])
return redis.call('HGET', KEYS[1], 'endedAt')
