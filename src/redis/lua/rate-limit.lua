--[[
  rate-limit: take one token from a rate bucket (GCRA, the `gcra` fragment put in front of this file), on the
  clock of Redis (TIME), so every process shares one bucket and one clock.
  Repeat-safety: a resent command takes a second token; the client only sees the later answer, which can be
  a refusal for a call that was counted. Harmless: it errs on the strict side by one token.

  KEYS[1] the bucket (string: theoretical arrival time, µs; expires once the bucket is full again)

  ARGV[1] rate, tokens a second (> 0)
  ARGV[2] burst, the bucket's size (>= 1)

  Returns 0 when the call passes (a token taken), else the milliseconds until a token is back (>= 1).
]]

return gcra_take(KEYS[1], now_us(), tonumber(ARGV[1]), tonumber(ARGV[2]))
