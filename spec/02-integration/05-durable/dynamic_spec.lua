-- Steps started at run time survive a killed node: a map over a list and
-- a strategy's own steps are rows with their definitions; the node that
-- resumes the execution finds them, replays what completed and runs what
-- did not; a skipped step's reason is kept. #postgres
local h = require "spec.helpers"
local json = require "chorus.json"
local pg = require "chorus.db.pg"

describe("dynamic steps across a killed node #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  it("a map of 40 items and a strategy's own steps resume on another node; nothing completed runs again", function()
    local url = h.fresh_db("dynamic")
    local dir = h.tmpdir()
    assert(os.execute("mkdir -p " .. dir .. "/strategies") == 0)
    h.write(dir .. "/strategies/twice.lua", [[
      return { name = "twice", run = function(ctx, steps)
        for _, s in ipairs(ctx:ordered(steps)) do
          local ok, err = ctx:run_step(s)
          if not ok and s.id ~= "maybe" then return nil, err end
        end
        local ok, out = ctx:run_step({ id = "extra", agent = "journal", params = steps[2].params })
        if not ok then return nil, out end
        return { items = #ctx:step("each").output, extra = out.step }
      end }]])
    local journal = dir .. "/journal.log"
    local p = { ms = 40, jitter_ms = 40, file = journal }
    local items = {}
    for i = 1, 40 do items[i] = i end
    h.write(dir .. "/c.json", json.encode({ name = "dyn", strategy = "twice", steps = {
      { id = "list", agent = "echo", params = { output = { items = items } } },
      { id = "each", agent = "journal", params = p, dependencies = { "list" }, map = "{{dep_list.items}}" },
      { id = "maybe", agent = "journal", params = p, dependencies = { "list" }, when = "dep_list.items[0] == 99" },
    }, settings = { parallel_limit = 4 } }))
    local code, out, err = h.sh(("%s enqueue %s/c.json --db %s --scripts %s --scripts %s/scripts"):format(
      h.binary, dir, url, dir, h.fixtures))
    assert.equal(0, code, err)
    local trace = out:match("%S+")
    local pool = pg.pool(url, { size = 2 })
    local function worker(log)
      return h.spawn(("%s worker --db %s --scripts %s --scripts %s/scripts --lease-ms 1500 --poll-ms 100"):format(
        h.binary, url, dir, h.fixtures), log)
    end
    local w1, w2 = worker(dir .. "/w1.log"), nil
    finally(function() for _, w in ipairs({ w1, w2 }) do if w then h.kill(w, "KILL") end end end)
    assert.is_true(h.wait_until(function() return #h.read_lines(journal) >= 12 end, 30000))
    h.kill(w1, "KILL")
    assert.is_true(h.wait_exit(w1, 5000))
    local done_at_kill = {}
    assert.is_true(h.wait_until(function()
      local busy = assert(pool:query([[SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
          AND pid <> pg_backend_pid() AND state <> 'idle']]))
      return tonumber(busy.rows[1].n) == 0
    end, 10000))
    local r = assert(pool:query([[SELECT step_id, definition IS NOT NULL AS dyn FROM orchestration_step_runs
      WHERE status = 'completed' AND step_id LIKE 'each.%']]))
    for _, row in ipairs(r.rows) do
      assert.is_true(row.dyn)
      done_at_kill[row.step_id] = true
    end
    assert.is_true(#r.rows < 40, "every item had completed before the kill")
    w2 = worker(dir .. "/w2.log")
    assert.is_true(h.wait_until(function()
      local e = assert(pool:query("SELECT status FROM orchestration_executions")).rows[1]
      return e.status == "completed"
    end, 60000), table.concat(h.read_lines(dir .. "/w2.log"), "\n"))
    -- every item ran exactly once to completion; those completed at the
    -- kill never again
    local ran = {}
    for _, line in ipairs(h.read_lines(journal)) do
      local step = line:match("^%d+ %S+ (%S+) %d+$")
      ran[step] = (ran[step] or 0) + 1
    end
    for step in pairs(done_at_kill) do assert.equal(1, ran[step], step .. " ran again") end
    for i = 0, 39 do assert.is_truthy(ran["each." .. i], "each." .. i .. " never ran") end
    assert.equal(1, ran.extra)
    local scode, sout, serr = h.sh(("%s status %s --json --db %s"):format(h.binary, trace, url))
    assert.equal(0, scode, serr)
    local rec = assert(json.decode(sout))
    assert.equal("completed", rec.status)
    assert.same({ items = 40, extra = "extra" }, rec.output)
    assert.equal(44, #rec.steps) -- 3 declared, 40 items, 1 of the strategy's own
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    assert.equal("skipped", by.maybe.status)
    assert.equal("condition false: dep_list.items[0] == 99", by.maybe.reason)
    assert.is_true(by["each.39"].dynamic)
    assert.equal("each", by["each.39"].parent)
    assert.equal(40, #by.each.output)
    pool:close()
  end)
end)
