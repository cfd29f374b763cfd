-- Durable execution over PostgreSQL: crash recovery and several nodes.
-- Real `chorus worker` processes are killed with SIGKILL mid-run; the
-- journal agent's log shows which steps ran again. #postgres
local h = require "spec.helpers"
local json = require "chorus.json"
local pg = require "chorus.db.pg"
local sched = require "chorus.sched"

-- Steps last ms plus up to ms at random, so executions do not move in
-- lockstep and a kill always lands with steps in flight.
local function config(journal, ms)
  local p = { ms = ms, jitter_ms = ms, file = journal }
  return { name = "durable", strategy = "sequential", steps = {
    { id = "s1", agent = "journal", params = p },
    { id = "s2", agent = "journal", params = p, dependencies = { "s1" } },
    { id = "s3", agent = "journal", params = p, dependencies = { "s2" } },
  } }
end

local function counts(pool)
  local r = assert(pool:query("SELECT status, count(*) AS n FROM orchestration_executions GROUP BY status"))
  local out = {}
  for _, row in ipairs(r.rows) do out[row.status] = row.n end
  return out
end

local function completed_steps(pool)
  local r = assert(pool:query([[SELECT execution_id::text AS e, step_id AS s, attempts FROM orchestration_step_runs
    WHERE status = 'completed']]))
  local set = {}
  for _, row in ipairs(r.rows) do set[row.e .. " " .. row.s] = row.attempts end
  return set
end

-- The tail of the workers' logs, for failure messages.
local function logs(dir)
  local out = {}
  for _, name in ipairs({ "w1", "w2", "n1", "n2", "n3" }) do
    local lines = h.read_lines(dir .. "/" .. name .. ".log")
    if #lines > 0 then
      out[#out + 1] = ("-- %s.log:\n%s"):format(name, table.concat(lines, "\n", math.max(1, #lines - 15)))
    end
  end
  return table.concat(out, "\n")
end

local function worker(url, scripts, log, extra)
  return h.spawn(("%s worker --db %s --scripts %s --lease-ms 1500 --poll-ms 100 %s"):format(
    h.binary, url, scripts, extra or ""), log)
end

describe("durable execution #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end
  local scripts = h.fixtures .. "/scripts"

  it("kill -9 a worker in the middle of 1000 executions: all finish, no completed step runs again", function()
    local url = h.fresh_db("recovery")
    local dir = h.tmpdir()
    local journal = dir .. "/journal.log"
    h.write(dir .. "/c.json", json.encode(config(journal, 20)))
    local code, out, err = h.sh(("%s enqueue %s/c.json --db %s --scripts %s --count 1000"):format(h.binary, dir, url, scripts))
    assert.equal(0, code, err)
    local traces = {}
    for t in out:gmatch("[^\n]+") do traces[#traces + 1] = t end
    assert.equal(1000, #traces)

    local pool = pg.pool(url, { size = 2 })
    local w1 = worker(url, scripts, dir .. "/w1.log", "--concurrency 100")
    local w2
    finally(function()
      for _, p in ipairs({ w1, w2 }) do if p then h.kill(p, "KILL") end end
    end)
    assert.is_true(h.wait_until(function() return (counts(pool).completed or 0) >= 150 end, 60000), logs(dir))
    h.kill(w1, "KILL")
    assert.is_true(h.wait_exit(w1, 5000))
    -- A commit the worker sent just before it died may still be running in
    -- its backend: the snapshot below is taken once none is busy.
    assert.is_true(h.wait_until(function()
      local busy = assert(pool:query([[SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
          AND pid <> pg_backend_pid() AND state <> 'idle']]))
      return tonumber(busy.rows[1].n) == 0
    end, 10000), "the killed worker's backends stayed busy")
    local done_at_kill = completed_steps(pool)
    local lines_at_kill = #h.read_lines(journal)
    local c = counts(pool)
    assert.is_true((c.completed or 0) < 1000, "the worker finished everything before the kill")
    assert.is_true((c.running or 0) > 0, "nothing was in flight at the kill: " .. json.encode(c))
    local r = assert(pool:query("SELECT execution_id::text AS e, step_id AS s, attempts FROM orchestration_step_runs WHERE status = 'running'"))
    local in_flight = {}
    for _, row in ipairs(r.rows) do in_flight[row.e .. " " .. row.s] = row.attempts end

    w2 = worker(url, scripts, dir .. "/w2.log", "--concurrency 200")
    assert.is_true(h.wait_until(function() return (counts(pool).completed or 0) == 1000 end, 120000),
      "not all executions completed: " .. json.encode(counts(pool)) .. "\n" .. logs(dir))
    h.kill(w2, "TERM")
    assert.is_true(h.wait_exit(w2, 30000), "worker did not stop\n" .. logs(dir))

    -- No step that was completed at the kill ran again.
    local lines = h.read_lines(journal)
    local rerun_in_flight = 0
    for i = lines_at_kill + 1, #lines do
      local _, e, s = lines[i]:match("^(%d+) (%S+) (%S+) (%d+)$")
      assert.is_nil(done_at_kill[e .. " " .. s], "completed step ran again: " .. lines[i])
      if in_flight[e .. " " .. s] then rerun_in_flight = rerun_in_flight + 1 end
    end
    assert.is_true(rerun_in_flight > 0)
    -- A step that was in flight ran again with its attempt recorded.
    local after = completed_steps(pool)
    for k, attempts in pairs(in_flight) do
      assert.equal(attempts + 1, after[k], "attempts of " .. k)
    end
    for k, attempts in pairs(done_at_kill) do assert.equal(attempts, after[k]) end
    -- Every execution: three completed steps and the sequential output.
    local bad = assert(pool:query([[SELECT count(*) AS n FROM orchestration_executions e
      WHERE (SELECT count(*) FROM orchestration_step_runs s WHERE s.execution_id = e.id AND s.status = 'completed') <> 3
         OR e.output->>'step' <> 's3']]))
    assert.equal(0, bad.rows[1].n)
    local resumed = assert(pool:query("SELECT count(*) AS n FROM orchestration_executions WHERE claims > 1"))
    assert.is_true(resumed.rows[1].n > 0)
    pool:close()
  end)

  it("three nodes, one killed mid-run: every execution completes exactly once", function()
    local url = h.fresh_db("nodes")
    local dir = h.tmpdir()
    local journal = dir .. "/journal.log"
    h.write(dir .. "/c.json", json.encode(config(journal, 15)))
    local pool = pg.pool(url, { size = 2 })
    local nodes = {}
    for i = 1, 3 do nodes[i] = worker(url, scripts, dir .. "/n" .. i .. ".log", "--concurrency 50") end
    finally(function()
      for _, p in ipairs(nodes) do h.kill(p, "KILL") end
    end)
    sched.sleep(300)
    local code, _, err = h.sh(("%s enqueue %s/c.json --db %s --scripts %s --count 600"):format(h.binary, dir, url, scripts))
    assert.equal(0, code, err)
    assert.is_true(h.wait_until(function() return (counts(pool).completed or 0) >= 100 end, 60000), logs(dir))
    h.kill(nodes[2], "KILL")
    assert.is_true(h.wait_exit(nodes[2], 5000))
    local done_at_kill = completed_steps(pool)
    local lines_at_kill = #h.read_lines(journal)
    assert.is_true(h.wait_until(function() return (counts(pool).completed or 0) == 600 end, 120000),
      "not all completed: " .. json.encode(counts(pool)) .. "\n" .. logs(dir))
    for _, i in ipairs({ 1, 3 }) do h.kill(nodes[i], "TERM") end
    for _, i in ipairs({ 1, 3 }) do assert.is_true(h.wait_exit(nodes[i], 30000), "node did not stop\n" .. logs(dir)) end
    -- Each node did part of the work; nobody re-ran a completed step.
    local lines, per_pid = h.read_lines(journal), {}
    for i, l in ipairs(lines) do
      local pid, e, s = l:match("^(%d+) (%S+) (%S+)")
      per_pid[pid] = (per_pid[pid] or 0) + 1
      if i > lines_at_kill then assert.is_nil(done_at_kill[e .. " " .. s], "completed step ran again: " .. l) end
    end
    local n = 0
    for _ in pairs(per_pid) do n = n + 1 end
    assert.equal(3, n)
    -- Exactly once: one terminal status each, each final step completed once.
    local c = counts(pool)
    assert.equal(600, c.completed)
    local dup = assert(pool:query([[SELECT count(*) AS n FROM orchestration_step_runs WHERE status = 'completed'
      GROUP BY execution_id HAVING count(*) <> 3]]))
    assert.equal(0, #dup.rows)
    pool:close()
  end)
end)
