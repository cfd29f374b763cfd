-- The strategy scripting API v1 (chorus.engine.context, docs/scripting.md):
-- steps started at run time, a step's record, fan-out with `map`,
-- conditions with `when`, and nothing of the engine reachable from ctx.
local h = require "spec.helpers"
local json = require "chorus.json"
local sched = require "chorus.sched"

local function engine_with(files)
  local dir = h.tmpdir()
  assert(os.execute("mkdir -p " .. dir .. "/strategies") == 0)
  for rel, src in pairs(files) do h.write(dir .. "/" .. rel, src) end
  return h.engine({ scripts = { dir } })
end

describe("scripting API v1", function()
  it("a strategy starts steps the config does not list; they are recorded like the others", function()
    local engine = engine_with({ ["strategies/fanout.lua"] = [[
      return { name = "fanout", run = function(ctx, steps)
        local ok, items = ctx:run_step(steps[1])
        if not ok then return nil, items end
        local tasks = {}
        for i, item in ipairs(items.list) do
          tasks[i] = ctx:spawn_step({ id = "summarise_" .. i, agent = "echo", input = { item = item } })
        end
        ctx:wait(tasks)
        local out = {}
        for i in ipairs(items.list) do out[i] = ctx:step("summarise_" .. i).output.item end
        return out
      end }]] })
    local exec = h.run(h.flat("fanout", { { id = "fetch", agent = "echo", params = { output = { list = { "a", "b", "c" } } } } }),
      {}, { engine = engine })
    assert.equal("completed", exec.status)
    assert.same({ "a", "b", "c" }, exec.output)
    local rec = exec:record()
    assert.equal(4, #rec.steps)
    assert.equal("summarise_2", rec.steps[3].id)
    assert.is_true(rec.steps[3].dynamic)
    assert.equal("echo", rec.steps[3].agent)
    assert.is_string(rec.steps[3].agent_version)
    assert.equal("completed", rec.steps[3].status)
    assert.is_string(json.encode(rec))
  end)

  it("an invalid step started at run time is refused with why, and nothing is recorded", function()
    local engine = engine_with({ ["strategies/bad.lua"] = [[
      return { name = "bad", run = function(ctx, steps)
        local ok, err = ctx:run_step({ id = "x", agent = "nope" })
        local ok2, err2 = ctx:run_step({ id = steps[1].id, agent = "echo" })
        return { err, err2, ok, ok2 }
      end }]] })
    local exec = h.run(h.flat("bad", { { id = "a", agent = "echo" } }), {}, { engine = engine })
    assert.matches("invalid step 'x': agent: unknown agent 'nope'", exec.output[1])
    assert.matches("step id 'a' is a step of the config", exec.output[2])
    assert.equal(1, #exec:record().steps)
  end)

  it("refuses steps past settings.max_steps, clearly", function()
    local engine = engine_with({ ["strategies/many.lua"] = [[
      return { name = "many", run = function(ctx)
        for i = 1, 10 do
          local ok, err = ctx:run_step({ id = "s" .. i, agent = "echo" })
          if not ok then return nil, err end
        end
      end }]] })
    local exec = h.run(h.flat("many", { { id = "a", agent = "echo" } }, { max_steps = 5 }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.matches("the execution has 5 steps, its maximum %(settings.max_steps%); cannot add 's5'", exec.error)
  end)

  it("ctx:step(id) gives a step's record; ctx:wait any gives the first to finish; task:cancel stops one", function()
    local engine = engine_with({ ["strategies/race.lua"] = [[
      return { name = "race", run = function(ctx, steps)
        local tasks = {}
        for i, s in ipairs(steps) do tasks[i] = ctx:spawn_step(s) end
        local first = ctx:wait(tasks, { any = true })
        for i, t in ipairs(tasks) do if i ~= first then t:cancel() end end
        local rec = ctx:step(steps[first].id)
        return { first = steps[first].id, status = rec.status, attempts = rec.attempts, agent = rec.agent }
      end }]] })
    local t0 = sched.now()
    local exec = h.run(h.flat("race", {
      { id = "slow", agent = "delay", params = { ms = 2000 } },
      { id = "fast", agent = "delay", params = { ms = 10, output = "won" } },
    }), {}, { engine = engine })
    assert.is_true(sched.now() - t0 < 1000)
    assert.same({ first = "fast", status = "completed", attempts = 1, agent = "delay" }, exec.output)
    assert.equal("cancelled", exec:run_of("slow").status)
  end)

  it("ctx reaches nothing of the engine: an undocumented field is an error naming it", function()
    local engine = engine_with({ ["strategies/peek.lua"] = [[
      return { name = "peek", run = function(ctx) return ctx.exec end }]] })
    local exec = h.run(h.flat("peek", { { id = "a", agent = "echo" } }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.matches("ctx has no field 'exec'", exec.error)
  end)

  it("the built-in strategies use only the documented API", function()
    -- each runs with the guarded ctx: an internal field would raise
    for _, strategy in ipairs({ "sequential", "parallel", "consensus", "fallback" }) do
      local steps = {
        { id = "a", agent = "echo", params = { output = "x" }, consensus_group = "g", on_failure = "continue" },
        { id = "b", agent = "fail", fallback_for = "a" },
      }
      local exec = h.run(h.flat(strategy, steps), {})
      assert.is_nil((exec.error or ""):match("ctx has no field"), strategy .. ": " .. tostring(exec.error))
    end
  end)

  describe("map", function()
    it("fans a step out over a 200-item list, in order, bounded by parallel_limit", function()
      local p = h.probe()
      local items = {}
      for i = 1, 200 do items[i] = { n = i } end
      local exec = h.run(h.flat("parallel", {
        { id = "fetch", agent = "echo", params = { output = { items = items } } },
        { id = "each", agent = "echo", dependencies = { "fetch" }, map = "{{dep_fetch.items}}" },
        { id = "busy", agent = "counter", dependencies = { "fetch" }, map = "{{dep_fetch.items}}",
          params = { ms = 2 } },
      }, { parallel_limit = 7 }), {})
      assert.equal("completed", exec.status)
      local out = exec:run_of("each").output
      assert.equal(200, #out)
      assert.equal(1, out[1].item.n)
      assert.equal(200, out[200].item.n)
      assert.equal(199, out[200].item_index)
      assert.equal("busy.0", exec:run_of("busy").output[1].step)
      assert.is_true(p.peak <= 7, "peak " .. p.peak)
      local rec = exec:record()
      assert.equal(403, #rec.steps)
      local first = rec.steps[4]
      assert.matches("^each%.0$", first.id)
      assert.equal("each", first.parent)
      assert.equal(0, first.item_index)
    end)

    it("fails clearly when the map names no list, and when an item fails", function()
      local exec = h.run(h.flat("sequential", {
        { id = "fetch", agent = "echo", params = { output = { items = "not a list" } } },
        { id = "each", agent = "echo", dependencies = { "fetch" }, map = "{{dep_fetch.items}}" },
      }), {})
      assert.equal("map: {{dep_fetch.items}} is not a list (string)", exec:run_of("each").error)
      exec = h.run(h.flat("sequential", {
        { id = "fetch", agent = "echo", params = { output = { items = { 1, 2 } } } },
        { id = "each", agent = "fail", dependencies = { "fetch" }, map = "{{dep_fetch.items}}" },
      }), {})
      assert.matches("^map: 2 of 2 items failed %(each.0: failed on purpose; each.1: failed on purpose%)",
        exec:run_of("each").error)
    end)
  end)

  describe("when", function()
    local function triage(status)
      return h.run(h.flat("parallel", {
        { id = "status", agent = "echo", params = { output = { status = status, rc = 12 } }, output_key = "job" },
        { id = "analyse", agent = "echo", params = { output = "analysed" }, dependencies = { "status" },
          when = 'job.status == "ABEND" and job.rc >= 8' },
        { id = "answer", agent = "echo", dependencies = { "status", "analyse" } },
      }), {})
    end

    it("runs a step whose condition holds", function()
      local exec = triage("ABEND")
      assert.equal("completed", exec:run_of("analyse").status)
      assert.equal("analysed", exec:run_of("answer").output.dep_analyse)
    end)

    it("skips a step whose condition is false, with the reason; its dependents run without it", function()
      local exec = triage("SUCC")
      assert.equal("completed", exec.status)
      local sr = exec:run_of("analyse")
      assert.equal("skipped", sr.status)
      assert.equal('condition false: job.status == "ABEND" and job.rc >= 8', sr.reason)
      assert.equal("completed", exec:run_of("answer").status)
      assert.is_nil(exec:run_of("answer").output.dep_analyse)
      assert.equal("SUCC", exec:run_of("answer").output.job.status)
      assert.equal(sr.reason, exec:record().steps[2].reason)
    end)

    it("is checked at validation: syntax with position, unknown dependencies", function()
      local engine = h.engine()
      local _, errs = engine:validate(h.flat("sequential", {
        { id = "a", agent = "echo" },
        { id = "b", agent = "echo", when = 'dep_a.status = "x"' },
        { id = "c", agent = "echo", when = 'dep_zz.status == "x"' },
        { id = "d", agent = "echo", when = 'dep_a.x == 1' },
      }))
      local by = {}
      for _, e in ipairs(errs) do by[e.path] = e.message end
      assert.equal('syntax error at 14: unexpected "="', by["steps[1].when"])
      assert.matches("names no step %('zz'%)", by["steps[2].when"])
      assert.matches("names step 'a', which is not a dependency of this step", by["steps[3].when"])
    end)
  end)
end)
