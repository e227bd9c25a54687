--[[
  issue: reserve one coupon of a promotion for a user, atomically, and queue the request.

  Checks, in order: a repeat of this very requestId (a resent command), the rate buckets (the user's in this
  promotion, then the client IP's when that limit is on), idempotent replay, promotion exists, window
  (Redis TIME), the user's count against perUserLimit, stock. On success: DECR stock, INCR
  the reservation sequence, count the user, record the idempotency key, record status QUEUED (no TTL
  while queued: confirm or fail sets it), XADD the request to the promotion's stream.

  KEYS[1] meta hash        (totalStock, perUserLimit, startsAt, endsAt, endedAt?)
  KEYS[2] stock            (remaining, integer)
  KEYS[3] seq              (reservations made so far)
  KEYS[4] user hash        (n = reservations held, last = latest requestId)
  KEYS[5] idempotency key  (only read or written when ARGV[4] is not empty)
  KEYS[6] status hash of the new request (status, userId, requestedAt, position: names from STATUS, see
          issuance-codec.ts; the table is put in front of this file)
  KEYS[7] stream           (entry fields: r requestId, u userId, p promotionId, t requestedAt ms, n position)
  KEYS[8] the user's rate bucket in this promotion (GCRA, µs; the `gcra` fragment is put in front of this file)
  KEYS[9] the client IP's rate bucket in this promotion (only touched when ARGV[9] > 0)

  ARGV[1] userId
  ARGV[2] requestId        (made by the caller; used only when the outcome is QUEUED)
  ARGV[3] promotionId
  ARGV[4] idempotency key  ("" when none)
  ARGV[5] idempotency TTL, ms
  ARGV[6] how long the user hash outlives the promotion's end, ms
  ARGV[7] the user's rate, calls a second (0: no limit)
  ARGV[8] the user's burst (bucket size)
  ARGV[9] the client IP's rate, calls a second, bursts of one second's worth, at least 1 (0: no limit)

  Returns { code, requestId, position, remainingStock }:
    1 QUEUED, 2 QUEUED (replay of an idempotency key: the first call's payload, as it was),
   -1 NOT_FOUND, -2 NOT_STARTED, -3 ENDED, -4 ALREADY_REQUESTED (requestId = the user's latest), -5 SOLD_OUT,
   -6 RATE_LIMITED (nothing reserved, no token taken; the last element is the wait in ms, not the stock).
  requestId is "" and position 0 when they do not apply.

  Rate limit: every call that passes the buckets takes one token from each, whatever its outcome (an
  idempotent replay, SOLD_OUT and the like included: the limit bounds calls, not coupons). A refused call
  takes none and changes nothing else. The one exception is a repeat of the same requestId: it is the same
  call delivered twice, already counted, so it is answered before the buckets (a refusal there would tell
  the client RATE_LIMITED about a reservation that was made).
]]

local userId, requestId, promotionId, idemKey = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function remaining()
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end

-- The same requestId twice can only be one call delivered twice: answer what the first one got.
local done = redis.call('HMGET', KEYS[6], STATUS.userId, STATUS.position)
if done[1] == userId and done[2] then
  return { 1, requestId, tonumber(done[2]), remaining() }
end

-- The clock of one place, for the buckets and the window alike.
local clock = redis.call('TIME')
local nowUs = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local userRate, ipRate = tonumber(ARGV[7]), tonumber(ARGV[9])
local wait = 0
if userRate > 0 then wait = gcra_wait(KEYS[8], nowUs, userRate, tonumber(ARGV[8])) end
-- Both buckets are looked at before either is spent: a refusal by one costs no token of the other.
if wait == 0 and ipRate > 0 then wait = gcra_wait(KEYS[9], nowUs, ipRate, math.max(1, ipRate)) end
if wait > 0 then
  return { -6, '', 0, wait }
end
if userRate > 0 then gcra_spend(KEYS[8], nowUs, userRate) end
if ipRate > 0 then gcra_spend(KEYS[9], nowUs, ipRate) end

if idemKey ~= '' then
  local first = redis.call('GET', KEYS[5])
  if first then
    local id, position, left = string.match(first, '^(%S+) (%d+) (%d+)$')
    return { 2, id, tonumber(position), tonumber(left) }
  end
end

local meta = redis.call('HMGET', KEYS[1], 'perUserLimit', 'startsAt', 'endsAt', 'endedAt')
if not meta[1] then
  return { -1, '', 0, 0 }
end

local t = clock
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowMs = string.format('%d', now)
local endsAt = tonumber(meta[3])
if meta[4] or now >= endsAt then
  return { -3, '', 0, remaining() }
end
if now < tonumber(meta[2]) then
  return { -2, '', 0, remaining() }
end

local held = tonumber(redis.call('HGET', KEYS[4], 'n') or '0')
if held >= tonumber(meta[1]) then
  return { -4, redis.call('HGET', KEYS[4], 'last') or '', 0, remaining() }
end

local stock = remaining()
if stock <= 0 then
  return { -5, '', 0, 0 }
end

stock = redis.call('DECR', KEYS[2])
local position = redis.call('INCR', KEYS[3])

redis.call('HSET', KEYS[4], 'n', held + 1, 'last', requestId)
redis.call('PEXPIREAT', KEYS[4], string.format('%d', endsAt + tonumber(ARGV[6])))

if idemKey ~= '' then
  redis.call('SET', KEYS[5], requestId .. ' ' .. position .. ' ' .. stock, 'PX', ARGV[5])
end

redis.call('HSET', KEYS[6], STATUS.status, 'QUEUED', STATUS.userId, userId, STATUS.requestedAt, nowMs, STATUS.position, position)

redis.call('XADD', KEYS[7], '*', 'r', requestId, 'u', userId, 'p', promotionId, 't', nowMs, 'n', position)

return { 1, requestId, position, stock }
