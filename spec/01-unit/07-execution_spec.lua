-- Execution lifecycle: the state machine and its events, pause/resume,
-- approvals, cancel, compensation, output, execution deadline.
local h = require "spec.helpers"
local sched = require "chorus.sched"

describe("execution", function()
  it("emits every transition of the execution and of each step", function()
    local exec, events = h.run(h.flat("sequential", {
      { id = "a", agent = "echo" }, { id = "b", agent = "echo" },
    }))
    assert.equal("completed", exec.status)
    assert.same({ "running", "completed" }, h.exec_statuses(events))
    assert.same({ "running", "completed" }, h.step_statuses(events, "a"))
    for _, e in ipairs(events) do
      assert.equal(exec.id, e.execution_id)
      assert.equal(exec.trace_id, e.trace_id)
      assert.is_number(e.at)
    end
  end)

  it("run_of finds a step run by step id, and nil for an unknown id", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "echo", params = { output = 1 } }, { id = "b", agent = "echo", params = { output = 2 } },
    }))
    assert.equal(exec.steps[2], exec:run_of("b"))
    assert.equal(1, exec:run_of("a").output)
    assert.is_nil(exec:run_of("nope"))
    assert.is_nil(rawget(exec, "runs_by_id")) -- no table per execution
  end)

  it("an ended execution lets go of its task, and controls still answer", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo" } }))
    assert.equal("completed", exec.status)
    -- The store keeps ended executions: their coroutines must not stay.
    assert.is_nil(exec.task)
    local ok, err = exec:cancel()
    assert.is_nil(ok)
    assert.matches("cannot cancel an execution that is completed", err)
  end)

  it("pauses between steps and resumes", function()
    local engine = h.engine()
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "delay", params = { ms = 30 } }, { id = "b", agent = "echo" },
    })))
    local exec = engine:execute(cfg, {})
    sched.sleep(5)
    assert.is_true(exec:pause())
    assert.equal("paused", exec.status)
    sched.sleep(60) -- a finishes; b must not start while paused
    assert.equal("completed", exec:run_of("a").status)
    assert.equal("pending", exec:run_of("b").status)
    assert.is_true(exec:resume())
    exec:wait()
    assert.equal("completed", exec.status)
    assert.equal("completed", exec:run_of("b").status)
  end)

  it("refuses controls in the wrong state with a reason", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo" } }))
    local ok, err = exec:pause()
    assert.is_nil(ok)
    assert.equal("cannot pause an execution that is completed", err)
    ok, err = exec:cancel()
    assert.is_nil(ok)
    assert.matches("cannot cancel", err)
    ok, err = exec:resume()
    assert.is_nil(ok)
    assert.is_string(err)
    ok, err = exec:approve("a")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("step a is not awaiting approval", err)
  end)

  it("an approval step pauses the execution until approved", function()
    local engine = h.engine()
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "echo", approval = true, params = { output = "done" } },
    })))
    local exec = engine:execute(cfg, {})
    assert.is_true(h.wait_until(function() return exec.status == "paused" end))
    assert.equal("paused", exec:run_of("a").status)
    assert.is_true(exec:approve("a", "alice"))
    exec:wait()
    assert.equal("completed", exec.status)
    assert.equal("done", exec.output)
    assert.same({ approved = true, by = "alice" }, exec:run_of("a").approval)
  end)

  it("a rejected approval fails the step (and aborts by default)", function()
    local engine = h.engine()
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo", approval = true } })))
    local exec = engine:execute(cfg, {})
    assert.is_true(h.wait_until(function() return exec.status == "paused" end))
    assert.is_true(exec:reject("a", "not now"))
    exec:wait()
    assert.equal("failed", exec.status)
    assert.equal("rejected: not now", exec:run_of("a").error)
  end)

  it("auto_approve approves at once", function()
    local exec, events = h.run(h.flat("sequential", { { id = "a", agent = "echo", approval = true } }), {}, { auto_approve = true })
    assert.equal("completed", exec.status)
    assert.same({ "paused", "running", "completed" }, h.step_statuses(events, "a"))
    assert.same({ "running", "paused", "running", "completed" }, h.exec_statuses(events))
  end)

  it("cancel aborts in-flight agents at once", function()
    local t0 = sched.now()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "delay", params = { ms = 10000 } },
      { id = "b", agent = "delay", params = { ms = 10000 } },
      { id = "c", agent = "echo", dependencies = { "a" } },
    }), {}, { during = function(e) sched.sleep(10) assert.is_true(e:cancel()) end })
    assert.is_true(sched.now() - t0 < 200)
    assert.equal("cancelled", exec.status)
    assert.equal("cancelled", exec:run_of("a").status) -- stopped, not failed
    assert.equal("cancelled", exec:run_of("a").error)
    assert.equal("skipped", exec:run_of("c").status)
  end)

  it("cancel while awaiting approval ends the execution", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo", approval = true } }), {},
      { during = function(e) sched.sleep(5) e:cancel() end })
    assert.equal("cancelled", exec.status)
    assert.equal("cancelled", exec:run_of("a").status) -- it had started: waiting for approval
  end)

  it("a step whose agent ignores the cancel and answers anyway is recorded cancelled, its answer dropped", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/stubborn.lua", [[
      local native = require "chorus.native"
      return { name = "stubborn", call = function()
        local t0 = native.now()
        while native.now() - t0 < 40 do require("chorus.sched").sleep(5) end -- ignores "cancelled"
        return { late = true }
      end }]])
    local exec = h.run(h.flat("parallel", {
      { id = "s", agent = "stubborn" },
      { id = "d", agent = "delay", params = { ms = 5000 } },
    }), {}, { engine = h.engine({ scripts = { dir } }), during = function(e) sched.sleep(10) e:cancel() end })
    assert.equal("cancelled", exec.status)
    assert.equal("cancelled", exec:run_of("s").status)
    assert.is_nil(exec:run_of("s").output)
    assert.equal("cancelled", exec:run_of("d").status)
  end)

  it("runs compensations of completed steps in reverse order when it aborts", function()
    local probe = h.probe()
    local exec, events = h.run(h.flat("sequential", {
      { id = "a", agent = "recorder", compensate = "recorder" },
      { id = "b", agent = "recorder", compensate = { agent = "recorder", timeout_ms = 1000 } },
      { id = "n", agent = "recorder" },
      { id = "c", agent = "fail" },
      { id = "d", agent = "recorder", compensate = "recorder" },
    }))
    assert.equal("failed", exec.status)
    assert.same({ "do:a", "do:b", "do:n", "undo:b", "undo:a" }, probe.log)
    assert.same({ "running", "compensation", "failed" }, h.exec_statuses(events))
    assert.equal("completed", exec:run_of("a").compensation.status)
    assert.is_nil(exec:run_of("d").compensation)
  end)

  it("a failing compensation is recorded, the others still run", function()
    local probe = h.probe()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "recorder", compensate = "recorder" },
      { id = "b", agent = "recorder", compensate = "fail" },
      { id = "c", agent = "fail" },
    }))
    assert.equal("failed", exec.status)
    assert.equal("failed", exec:run_of("b").compensation.status)
    assert.equal("completed", exec:run_of("a").compensation.status)
    assert.same({ "do:a", "do:b", "undo:a" }, probe.log)
  end)

  it("paused before it started, it starts paused and runs when resumed", function()
    local engine = h.engine()
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo", params = { output = 1 } } })))
    local exec = engine:execute(cfg, {}, { detached = true })
    assert.is_true(exec:pause())
    assert.equal("paused", exec.status)
    sched.sleep(20)
    assert.equal("pending", exec:run_of("a").status)
    assert.is_true(exec:resume())
    exec:wait()
    assert.equal("completed", exec.status)
    assert.equal(1, exec.output)
  end)

  it("cancelled before its task ever ran, it ends cancelled with every step skipped", function()
    local engine = h.engine()
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    local exec = engine:execute(cfg, {}, { detached = true })
    assert.is_true(exec:cancel())
    assert.equal("cancelled", exec.status)
    assert.equal(exec, exec:wait())
    assert.equal("skipped", exec:run_of("a").status)
    assert.is_nil(exec:cancel())
  end)

  it("fails when settings.timeout_ms passes", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "delay", params = { ms = 5000 } } },
      { timeout_ms = 30 }))
    assert.equal("failed", exec.status)
    assert.equal("execution timed out after 30 ms", exec.error)
  end)

  it("output is settings.output_step's output when set", function()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "echo", params = { output = "A" } },
      { id = "b", agent = "echo", params = { output = "B" } },
    }, { output_step = "a" }))
    assert.equal("A", exec.output)
  end)

  it("produces the documented record", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo", params = { output = 1 } } }))
    local rec = exec:record()
    assert.equal("completed", rec.status)
    assert.equal(1, rec.output)
    assert.equal("a", rec.steps[1].id)
    for _, k in ipairs({ "status", "attempts", "latency_ms", "agent", "agent_version", "output" }) do
      assert.is_not_nil(rec.steps[1][k], k)
    end
    assert.is_number(rec.metrics.latency_ms)
    assert.is_string(require("chorus.json").encode(rec))
  end)
end)
