--[[
  setup-promotion: create or rebuild a promotion's Redis state, and its consumer group.
  Only writes what is missing, so it can run on every start and every reconciliation without touching live
  counters. The caller adds the promotion to the registry and writes any rebuilt per-user counts BEFORE this
  script: a registered promotion without keys is harmless (the consumer creates its stream and group) while a
  set-up one nobody reads would queue forever, and the meta hash this script creates is what opens the sale.

  KEYS[1] meta hash
  KEYS[2] stock
  KEYS[3] seq
  KEYS[4] stream
  KEYS[5] issued counter

  ARGV[1] totalStock
  ARGV[2] perUserLimit
  ARGV[3] startsAt (ms)
  ARGV[4] endsAt (ms)
  ARGV[5] endedAt (ms, "" when not ended)
  ARGV[6] remaining stock to set when the stock key is missing
  ARGV[7] reservations so far, to set when the seq key is missing
  ARGV[8] consumer group
  ARGV[9] coupons issued so far (PostgreSQL's count), to set when the issued counter is missing
  ARGV[10] "1" for a rebuild from PostgreSQL: when it creates the meta hash or the issued counter, the meta gets
           recount = 1, so the counter is checked against PostgreSQL once nothing is in flight
           (settle-issued.lua); "" for a new promotion

  Returns 1 when the meta hash was (re)created, 0 when it was already there.
  Repeating it is harmless: what exists is left as it is.
]]

local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'totalStock', ARGV[1], 'perUserLimit', ARGV[2],
    'startsAt', ARGV[3], 'endsAt', ARGV[4])
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[1], 'endedAt', ARGV[5])
  end
  created = 1
end
redis.call('SET', KEYS[2], ARGV[6], 'NX')
redis.call('SET', KEYS[3], ARGV[7], 'NX')
-- A rebuild that (re)creates the meta hash or the issued counter flags the counter for settle-issued.lua.
if ARGV[10] == '1' and (created == 1 or redis.call('EXISTS', KEYS[5]) == 0) then
  redis.call('HSET', KEYS[1], 'recount', '1')
end
redis.call('SET', KEYS[5], ARGV[9], 'NX')
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[4], ARGV[8], '0', 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP', 1, true) then
  return redis.error_reply(tostring(err))
end
return created
