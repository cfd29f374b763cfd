-- bench/agents/bench.lua: the reference workload with every step an `llm`
-- agent call (the real adapter: template, HTTP, JSON, usage, price
-- lookup) to the stand-in endpoint ../shared/bench/peers/servers.sh starts
-- (nginx answering one fixed completion at LLM_URL). Run through
-- bench/agents/run.sh.
--
--   LLM_URL=http://127.0.0.1:55480/v1/chat/completions \
--     chorus lua bench/agents/bench.lua WORKLOAD N INFLIGHT
-- Prints one JSON line: n, inflight, seconds, exec_per_s, calls,
-- cpu_us_per_call (this process's utime + stime over the measured window
-- divided by the agent calls), peak_rss_mb, ok (every step of every
-- execution completed with the endpoint's answer).
local engine_mod = require "chorus.engine"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

local workload_path, n, inflight = ...
n = tonumber(n) or 20000
inflight = tonumber(inflight) or 100
local llm_url = assert(os.getenv("LLM_URL"), "LLM_URL is not set (bench/agents/run.sh sets it)")
local base_url = assert(llm_url:match("^(.*)/chat/completions$"), "LLM_URL must end in /chat/completions")

local f = assert(io.open(workload_path, "rb"))
local doc = assert(json.decode(f:read("*a")))
f:close()
-- Every step one chat completion; its prompt carries the step's input, as
-- the peer's agents send theirs (the job and the dependencies' outputs).
for _, s in ipairs(doc.steps) do
  local prompt = { s.name .. ": {{job_name}}" }
  for _, d in ipairs(s.dependencies or {}) do prompt[#prompt + 1] = "{{dep_" .. d .. "}}" end
  s.agent = "llm"
  s.params = { base_url = base_url, model = "bench", prompt = table.concat(prompt, " ") }
end

-- utime + stime of the whole process (every thread), in µs.
local function cpu_us()
  local fh = assert(io.open("/proc/self/stat", "rb"))
  local stat = fh:read("*a")
  fh:close()
  local fields = {}
  for w in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  -- after "pid (comm) ": state is field 1; utime 12, stime 13 (clock ticks, 100/s)
  return (tonumber(fields[12]) + tonumber(fields[13])) * 10000
end

local engine = engine_mod.new({ store_opts = { max_finished = 0 } })
local cfg = assert(engine:validate(doc))
local steps_per_exec = #cfg.steps
local completed, failed, calls, first_error = 0, 0, 0, nil
local peak_rss = native.rss()

local function tally(exec)
  if exec.status == "completed" then completed = completed + 1 else failed = failed + 1 end
  for _, sr in ipairs(exec.steps) do
    if sr.status == "completed" and type(sr.output) == "table" and sr.output.text == "ok" then
      calls = calls + sr.attempts
    elseif not first_error then
      first_error = ("step %s: %s"):format(sr.id, tostring(sr.error))
    end
  end
end

-- A sliding window: `width` executions in flight, each one's end starting
-- the next (as bench/engine does).
local function window(count, width)
  local started, ended, all_done = 0, 0, sched.cond()
  local function start_next()
    started = started + 1
    local exec = engine:execute(cfg, { job_name = "JOB_" .. (started % 3) }, { detached = true })
    exec.on_end = function(e)
      tally(e)
      ended = ended + 1
      if ended % 1000 == 0 then
        local rss = native.rss()
        if rss > peak_rss then peak_rss = rss end
      end
      if started < count and started - ended < width then start_next()
      elseif ended == count then all_done:signal(true) end
    end
  end
  while started < count and started - ended < width do start_next() end
  if ended < count then all_done:wait() end
end

-- Warm-up (not timed): the JIT, the connection pool.
window(math.min(math.floor(n / 10) + 1, 2000), inflight)
completed, failed, calls = 0, 0, 0
collectgarbage()

local c0, t0 = cpu_us(), native.now()
window(n, inflight)
local secs = (native.now() - t0) / 1000
local cpu = cpu_us() - c0
local rss = native.rss()
if rss > peak_rss then peak_rss = rss end
engine:close()

io.stdout:write(json.encode({
  n = n, inflight = inflight, seconds = secs, exec_per_s = completed / secs, calls = calls,
  cpu_us_per_call = calls > 0 and cpu / calls or json.null, peak_rss_mb = peak_rss / 1048576,
  ok = completed == n and failed == 0 and calls == n * steps_per_exec, first_error = first_error or json.null,
}), "\n")
return (completed == n and failed == 0) and 0 or 1
