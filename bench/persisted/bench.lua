-- bench/persisted/bench.lua: executions with every transition durable in
-- PostgreSQL (group commit through chorus.store.pg), and the raw ceiling:
-- the same rows written by a plain pipelined script. Run it through
-- bench/persisted/run.sh, which starts PostgreSQL with stock durability.
--
--   chorus lua bench/persisted/bench.lua URL WORKLOAD MODE N [INFLIGHT]
--   MODE seq    N executions back to back (echo agents)
--   MODE conc   N executions, INFLIGHT at a time (echo agents)
--   MODE raw    the rows of N executions, pipelined in batches of INFLIGHT
-- Prints one JSON line.
local engine_mod = require "chorus.engine"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"
local pg = require "chorus.pg"
local pgstore = require "chorus.store.pg"
local node_mod = require "chorus.node"

local url, workload_path, mode, n, inflight = ...
n, inflight = tonumber(n) or 2000, tonumber(inflight) or 1

local f = assert(io.open(workload_path, "rb"))
local doc = assert(json.decode(f:read("*a")))
f:close()

local pool = pg.pool(url, { size = 8 })
assert(pool:exec([[TRUNCATE orchestration_callbacks, orchestration_step_runs, orchestration_executions]]))
local store = pgstore.new({ pool = pool })
local engine = engine_mod.new({ store = store })
local cfg = assert(engine:validate(doc))
local node = node_mod.new({ engine = engine, pool = pool, claim = false, concurrency = 1e9 })
local peak_rss = native.rss()

local function one(i)
  local _, exec = node:submit(cfg, { job_name = "JOB_" .. (i % 3) }, {})
  exec:wait()
  return exec.status == "completed"
end

-- The raw ceiling: the rows one execution ends with (the execution, its
-- four step runs, its final update), written as bulk statements by
-- chorus.store.pg_writes in batches, without the engine.
local writes = require "chorus.store.pg_writes"
local function raw_batch(first, count)
  local recs = {}
  local now = native.time()
  for i = first, first + count - 1 do
    local exec = { id = native.uuid(), trace_id = native.uuid(), config = cfg, status = "running",
      input = { job_name = "J" }, created_at = now }
    local ins = pgstore.insert_records(store, exec, { node_id = "bench", claim_token = native.uuid(), lease_ms = 15000 })
    for _, r in ipairs(ins) do recs[#recs + 1] = r end
    for s, step in ipairs(cfg.steps) do
      recs[#recs + 1] = { kind = "step", execution_id = exec.id, step_id = step.id, step_index = s - 1,
        name = step.name, agent = step.agent, agent_version = "v", status = "completed", attempts = 1,
        output = '{"job_name":"J"}', output_truncated = false, latency_ms = 0.1, tokens = 0, cost = 0,
        started_at = now, finished_at = now, seq = 1e9 + s, claims = 1 }
    end
    recs[#recs + 1] = { kind = "update", id = exec.id, status = "completed", output = '{"job_name":"J"}',
      tokens = 0, cost = 0, latency_ms = 1, started_at = now, finished_at = now, script_versions = "{}",
      paused = false, seq = 1e9 + 10 }
  end
  return recs
end

local completed, statements = 0, 0
local t0 = native.now()
if mode == "raw" then
  -- Batches of `inflight` executions' rows, several batches in flight on
  -- the pool's connections, like the committer under load.
  local next_i = 1
  local workers = {}
  for w = 1, 4 do
    workers[w] = sched.spawn(function()
      while next_i <= n do
        local first = next_i
        local count = math.min(inflight, n - first + 1)
        next_i = next_i + count
        local recs = raw_batch(first, count)
        local plan = writes.build(recs)
        assert(pool:batch(plan.stmts))
        for _, r in ipairs(recs) do if r.kind == "snapshot" then store.known_snapshots[r.hash] = true end end
        statements = statements + #recs
        completed = completed + count
      end
    end)
  end
  sched.wait_all(workers)
elseif inflight <= 1 then
  for i = 1, n do if one(i) then completed = completed + 1 end end
else
  local next_i = 0
  local workers = {}
  for w = 1, inflight do
    workers[w] = sched.spawn(function()
      while next_i < n do
        next_i = next_i + 1
        if one(next_i) then completed = completed + 1 end
      end
    end)
  end
  sched.wait_all(workers)
  local rss = native.rss()
  if rss > peak_rss then peak_rss = rss end
end
local secs = (native.now() - t0) / 1000
if mode ~= "raw" then statements = store.committer.stats.records end
local rss = native.rss()
if rss > peak_rss then peak_rss = rss end
local st = store.committer.stats
io.stdout:write(json.encode({
  mode = mode, n = n, inflight = inflight, seconds = secs, exec_per_s = completed / secs,
  step_runs_per_s = completed * #cfg.steps / secs, rows_per_s = statements / secs,
  commits = mode ~= "raw" and st.batches or nil, max_batch = mode ~= "raw" and st.max_batch or nil,
  peak_rss_mb = peak_rss / 1048576, ok = completed == n,
}), "\n")
pool:close()
return completed == n and 0 or 1
