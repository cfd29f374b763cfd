-- bench/persisted/bench.lua: executions with every transition durable in
-- PostgreSQL (group commit through chorus.store.pg), and the raw ceiling:
-- the same rows written by a plain pipelined script. Run it through
-- bench/persisted/run.sh, which starts PostgreSQL with stock durability.
--
--   chorus lua bench/persisted/bench.lua URL WORKLOAD MODE N [INFLIGHT]
--   MODE seq    N executions back to back (echo agents)
--   MODE conc   N executions, INFLIGHT at a time (echo agents)
--   MODE raw    the same rows for N executions by a plain script, in
--               chunks of INFLIGHT executions (see raw_chunk)
-- Prints one JSON line.
local engine_mod = require "chorus.engine"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"
local pg = require "chorus.db.pg"
local pgstore = require "chorus.store.pg"
local node_mod = require "chorus.run.node"

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

-- The raw ceiling: the same rows written in the same order of
-- dependence as the engine writes them (a step's completion durable
-- before its dependents start), by a plain script with the store's bulk
-- statements (chorus.store.pg_writes), without the engine: for a chunk of
-- executions, five rounds, each one batch:
--   1 insert; 2 running, step_1 and step_3 running;
--   3 step_1 and step_3 completed, step_2 running;
--   4 step_2 completed, step_4 running; 5 step_4 completed, completed.
local writes = require "chorus.store.pg_writes"
local OUT = '{"job_name":"J"}'
local PHASES = {
  { steps = {} },
  { update = "running", steps = { { 1, "running" }, { 3, "running" } } },
  { steps = { { 1, "completed" }, { 3, "completed" }, { 2, "running" } } },
  { steps = { { 2, "completed" }, { 4, "running" } } },
  { update = "completed", steps = { { 4, "completed" } } },
}
local function raw_chunk(count)
  local execs = {}
  local now = native.time()
  for i = 1, count do
    execs[i] = { id = native.uuid(), trace_id = native.uuid(), config = cfg, status = "pending",
      input = { job_name = "J" }, created_at = now, n = 0 }
  end
  local rows = 0
  for p, phase in ipairs(PHASES) do
    local recs = {}
    for _, exec in ipairs(execs) do
      if p == 1 then
        local ins = pgstore.insert_records(store, exec, { node_id = "bench", claim_token = native.uuid(), lease_ms = 15000 })
        for _, r in ipairs(ins) do recs[#recs + 1] = r end
      end
      for _, st in ipairs(phase.steps) do
        local step = cfg.steps[st[1]]
        exec.n = exec.n + 1
        recs[#recs + 1] = { kind = "step", execution_id = exec.id, step_id = step.id, step_index = st[1] - 1,
          name = step.name, agent = step.agent, agent_version = "v", status = st[2], attempts = 1,
          output = st[2] == "completed" and OUT or nil, output_truncated = false, latency_ms = 0.1,
          started_at = now, finished_at = st[2] == "completed" and now or nil, seq = 1e9 + exec.n, claims = 1 }
      end
      if phase.update then
        exec.n = exec.n + 1
        recs[#recs + 1] = { kind = "update", id = exec.id, status = phase.update,
          output = phase.update == "completed" and OUT or nil, latency_ms = 1, started_at = now,
          finished_at = phase.update == "completed" and now or nil, script_versions = "{}", paused = false,
          seq = 1e9 + exec.n }
      end
    end
    local plan = writes.build(recs)
    assert(pool:batch(plan.stmts))
    for _, r in ipairs(recs) do if r.kind == "snapshot" then store.known_snapshots[r.hash] = true end end
    rows = rows + #recs
  end
  return rows
end

local completed, statements = 0, 0
local t0 = native.now()
if mode == "raw" then
  -- Chunks of `inflight` executions, four chunks in flight on the pool's
  -- connections.
  local next_i = 1
  local workers = {}
  for w = 1, 4 do
    workers[w] = sched.spawn(function()
      while next_i <= n do
        local first = next_i
        local count = math.min(inflight, n - first + 1)
        next_i = next_i + count
        local rows = raw_chunk(count) -- yields: add after it returns
        statements = statements + rows
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
