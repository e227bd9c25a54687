-- wrk script for the benchmark: POSTs pre-built requests read from a file, so that wrk spends no CPU on
-- tokens or bodies, and writes its figures as JSON for bench/generator.ts.
--   BENCH_WRK_FILE     one request a line: "<authorization header or empty>\t<JSON body>"
--   BENCH_WRK_THREADS  wrk's -t (thread i takes lines i, i+t, i+2t, ...: distinct users per thread)
--   BENCH_WRK_ONCE     "1": each line is sent once (a crowd of distinct users); a thread writes
--                      BENCH_WRK_OUT.sent.<thread> once all its requests are out, BENCH_WRK_OUT.done.<thread>
--                      once all are answered, and the bench ends wrk with SIGINT (a stopped thread does
--                      not end wrk's -d sleep; a request lost to a socket error is never answered)
--   BENCH_WRK_OUT      where done() writes the JSON result
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

local requests = {}
local sent = 0
local once = false
outcomes = {} -- global: done() reads it from each thread with thread:get
local answered = 0
local stopped = false

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
  once = os.getenv("BENCH_WRK_ONCE") == "1"
  local path = wrk.path
  local line_no = 0
  for line in io.lines(os.getenv("BENCH_WRK_FILE")) do
    if line_no % nthreads == index then
      local tab = string.find(line, "\t", 1, true)
      local auth = string.sub(line, 1, tab - 1)
      local headers = { ["Content-Type"] = "application/json" }
      if auth ~= "" then headers["Authorization"] = auth end
      table.insert(requests, wrk.format("POST", path, headers, string.sub(line, tab + 1)))
    end
    line_no = line_no + 1
  end
end

local verified = false

function request()
  if index == 0 and not verified then
    -- wrk calls thread 0's request() once before the run to check what it returns (script_verify_request);
    -- that request is never sent, so it must not use up a user.
    verified = true
    return requests[1]
  end
  sent = sent + 1
  if once and sent > #requests then
    if sent == #requests + 1 then io.open(os.getenv("BENCH_WRK_OUT") .. ".sent." .. index, "w"):close() end
    -- Until this thread's last answers are in, its idle connections send something cheap and uncounted.
    return wrk.format("GET", "/healthz")
  end
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  if stopped then return end
  if once and status == 200 and string.find(body, '"status":"ok"', 1, true) then return end
  answered = answered + 1
  if once and answered == #requests then
    stopped = true
    io.open(os.getenv("BENCH_WRK_OUT") .. ".done." .. index, "w"):close()
    wrk.thread:stop()
  end
  local outcome
  if status == 200 then
    outcome = string.match(body, '"outcome":"(%u[%u_]*)"') or "other"
  else
    outcome = "HTTP " .. status
  end
  outcomes[outcome] = (outcomes[outcome] or 0) + 1
end

local function encode(value)
  if type(value) == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, string.format("%q:%s", tostring(k), encode(v)))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(value) == "string" then
    return string.format("%q", value)
  end
  return tostring(value)
end

function done(summary, latency, _)
  local merged = {}
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("outcomes") or {}) do merged[k] = (merged[k] or 0) + v end
  end
  local percentiles = {}
  for _, p in ipairs({ 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100 }) do
    percentiles[tostring(p)] = latency:percentile(p)
  end
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  out:write(encode({
    durationUs = summary.duration,
    requests = summary.requests,
    errors = summary.errors,
    latencyUs = { min = latency.min, max = latency.max, mean = latency.mean, percentiles = percentiles },
    outcomes = merged,
  }))
  out:close()
end
