--[[
  delete-consumer: remove a dead consumer's name from the group, only if it holds no pending entry.
  Checked and done at once: a name taken again meanwhile (a restarted process that has already read
  entries) is never deleted with its entries, which would leave them delivered to nobody.
  Repeat-safe: deleting a name that is gone changes nothing.

  KEYS[1] the promotion's stream

  ARGV[1] consumer group
  ARGV[2] consumer name

  Returns 1 when the name was deleted, 0 when it holds entries (or the stream or group is gone).
]]

local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
