--[[
  consumer-lease: take, renew or release the lease on a consumer name (its heartbeat key).
  A consumer renews its lease every heartbeat; once the key expires, the others take its entries over.
  Repeat-safe: renewing or releasing twice changes nothing more.

  KEYS[1] the name's heartbeat key

  ARGV[1] owner ("<host> <pid> <instance> <boot id> <pid namespace>")
  ARGV[2] lease, ms; 0 releases (deletes the key when it is the owner's)
  ARGV[3] an owner that may be replaced ("" for none): a dead earlier incarnation with the caller's host, boot id
          and PID namespace (the caller probed its pid); replaced only if it still holds the key

  Returns 1 when the caller holds the lease after the call (0 after a release), 0 when another owner holds it.
]]

local current = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if current == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if not current or current == ARGV[1] or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
