--[[
  confirm: after the batch's coupons are committed in PostgreSQL, mark each request ISSUED,
  publish its confirmation, count it in the promotion's issued counter, then XACK and XDEL its stream entry,
  in that order, atomically.
  Repeating it is harmless: a request already final (ISSUED, or FAILED by another consumer) is neither
  rewritten, published nor counted again; its entry is still acknowledged. A missing issued counter is left
  missing (not started from 0): readers then count PostgreSQL's rows, until setup-promotion sets it.
  A request whose status hash is gone (never expires while QUEUED: Redis lost it) may already be in the count a
  rebuild read from PostgreSQL: it is counted, and the counter flagged (meta recount = 1) for settle-issued.lua.

  KEYS[1]         the promotion's stream
  KEYS[2]         the promotion's issued counter
  KEYS[3]         the promotion's meta hash
  KEYS[4..n+3]    the status hash of each request, in the order of the entries in ARGV

  ARGV[1] consumer group
  ARGV[2] status TTL, ms
  then 3 values per entry:
    entryId, channel (sharded, in the promotion's slot: SPUBLISH), message (JSON, published as is)

  The message holds the status hash's fields under the hash's own names (the table STATUS, put in front by
  scripts.ts from issuance-codec.ts): the hash is written from it, so a request's state is sent once.

  Returns the number of entries acknowledged.
]]

local group, ttl = ARGV[1], ARGV[2]
local ids = {}
local issued = 0
local lost = false
local n = (#ARGV - 2) / 3
local copied = { STATUS.userId, STATUS.requestedAt, STATUS.couponId, STATUS.code, STATUS.issuedAt }

for i = 0, n - 1 do
  local a = 3 + i * 3
  local statusKey = KEYS[4 + i]
  local state = redis.call('HGET', statusKey, STATUS.status)
  if not state then lost = true end
  if state ~= 'ISSUED' and state ~= 'FAILED' then
    local message = cjson.decode(ARGV[a + 2])
    local fields = { STATUS.status, 'ISSUED' }
    for _, field in ipairs(copied) do
      local value = message[field]
      -- JSON numbers (ms) decode as doubles: written back as integers, exactly.
      if type(value) == 'number' then value = string.format('%d', value) end
      fields[#fields + 1] = field
      fields[#fields + 1] = value
    end
    redis.call('HSET', statusKey, unpack(fields))
    redis.call('PEXPIRE', statusKey, ttl)
    redis.call('SPUBLISH', ARGV[a + 1], ARGV[a + 2])
    issued = issued + 1
  end
  ids[#ids + 1] = ARGV[a]
end

if issued > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCRBY', KEYS[2], issued)
  if lost and redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HSET', KEYS[3], 'recount', '1')
  end
end
if #ids == 0 then
  return 0
end
local acked = redis.call('XACK', KEYS[1], group, unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
return acked
