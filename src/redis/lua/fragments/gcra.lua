--[[
  gcra: a fragment, not a script. scripts.ts puts it in front of the scripts that limit a rate, so the one
  definition of the bucket is shared rather than repeated.

  A token bucket of `burst` tokens refilled at `rate` a second, kept as one
  number, the theoretical arrival time (TAT, microseconds of Redis TIME). Over any t seconds at most
  burst + rate * t calls pass. A call that passes takes one token (TAT moves on by 1/rate s); a refused call
  changes nothing. The key expires once the bucket is full again, so idle buckets cost no memory.
]]
local function gcra_next(key, nowUs, rate)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < nowUs then tat = nowUs end
  return tat + 1000000 / rate
end

-- 0 when a call may pass now, else the milliseconds until one token is back (at least 1). Writes nothing.
local function gcra_wait(key, nowUs, rate, burst)
  local allowAt = gcra_next(key, nowUs, rate) - burst * 1000000 / rate
  if allowAt > nowUs then
    return math.max(1, math.ceil((allowAt - nowUs) / 1000))
  end
  return 0
end

-- Takes one token (call it only once gcra_wait said 0).
local function gcra_spend(key, nowUs, rate)
  local nextTat = gcra_next(key, nowUs, rate)
  -- Rounded up, never down: rounding may only make the bucket stricter, never let one more call through.
  redis.call('SET', key, string.format('%.0f', math.ceil(nextTat)), 'PX', math.ceil((nextTat - nowUs) / 1000) + 1)
end

-- gcra_wait, then gcra_spend when the call passes.
local function gcra_take(key, nowUs, rate, burst)
  local wait = gcra_wait(key, nowUs, rate, burst)
  if wait == 0 then gcra_spend(key, nowUs, rate) end
  return wait
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
