-- bench/engine/bench.lua: in-memory engine throughput on the reference
-- workload (../shared/bench/workload.json). Run through bench/engine/run.sh.
--
--   chorus lua bench/engine/bench.lua WORKLOAD MODE N [INFLIGHT]
--   MODE seq:  N executions back to back, echo agents
--   MODE conc: N executions, INFLIGHT at a time, agents are 10 ms `delay`s
-- Prints one JSON line: mode, n, inflight, seconds, exec_per_s,
-- steps_per_s, peak_rss_mb, and a check that every step ran exactly N times.
local engine_mod = require "chorus.engine"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

local workload_path, mode, n, inflight = ...
n = tonumber(n) or 10000
inflight = tonumber(inflight) or 1

local f = assert(io.open(workload_path, "rb"))
local doc = assert(json.decode(f:read("*a")))
f:close()
if mode == "conc" then
  for _, s in ipairs(doc.steps) do
    s.agent = "delay"
    s.params = { ms = 10 }
  end
end

-- Finished executions are not kept: the bench measures the engine.
local engine = engine_mod.new({ store_opts = { max_finished = 0 } })
local cfg = assert(engine:validate(doc))
local steps_per_exec = #cfg.steps
local completed, failed, step_runs = 0, 0, 0
local peak_rss = native.rss()
local peak_heap = collectgarbage("count") -- KB of the Lua heap

local function tally(exec)
  if exec.status == "completed" then completed = completed + 1 else failed = failed + 1 end
  for _, sr in ipairs(exec.steps) do
    if sr.status == "completed" then step_runs = step_runs + 1 end
  end
end

local function one(i)
  tally(engine:execute(cfg, { job_name = "JOB_" .. (i % 3) }):wait())
end

-- A sliding window as a node runs executions: `width` detached
-- executions, each one's end starting the next (no waiting task each).
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
        local heap = collectgarbage("count")
        if heap > peak_heap then peak_heap = heap end
      end
      if started < count and started - ended < width then start_next()
      elseif ended == count then all_done:signal(true) end
    end
  end
  -- Filled at once, as a burst of submissions would: the scheduler runs
  -- tasks in fair batches, so a filler that yielded would compete with
  -- the executions it started and never reach the width.
  while started < count and started - ended < width do start_next() end
  if ended < count then all_done:wait() end
end

-- Warm-up (not timed): lets the JIT compile the hot paths.
local warm = math.min(math.floor(n / 10) + 1, 2000)
if inflight <= 1 then
  for i = 1, warm do one(i) end
else
  window(warm, math.min(inflight, warm))
end
completed, failed, step_runs = 0, 0, 0
collectgarbage()

local t0 = native.now()
if inflight <= 1 then
  for i = 1, n do one(i) end
else
  window(n, inflight)
end
local secs = (native.now() - t0) / 1000
local rss = native.rss()
if rss > peak_rss then peak_rss = rss end
local heap = collectgarbage("count") -- back to back, only sampled here
if heap > peak_heap then peak_heap = heap end

io.stdout:write(json.encode({
  mode = mode, n = n, inflight = inflight, seconds = secs,
  exec_per_s = completed / secs, steps_per_s = step_runs / secs,
  peak_rss_mb = peak_rss / 1048576, peak_lua_heap_mb = peak_heap / 1024,
  ok = (completed == n and failed == 0 and step_runs == n * steps_per_exec),
  completed = completed, failed = failed,
}), "\n")
return (completed == n and failed == 0) and 0 or 1
