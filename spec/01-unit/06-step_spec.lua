-- The step executor: input, params, timeout, retries, backoff, on_failure,
-- Lua errors, metrics, versions.
local h = require "spec.helpers"
local step = require "chorus.engine.step"
local sched = require "chorus.sched"

describe("step executor", function()
  it("gives a step the execution input plus dep_<id> and output_key of its dependencies", function()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "echo", params = { output = { v = 1 } }, output_key = "first" },
      { id = "b", agent = "echo", dependencies = { "a" } },
    }), { job = "J1" })
    assert.equal("completed", exec.status)
    assert.same({ job = "J1", dep_a = { v = 1 }, first = { v = 1 } }, exec:run_of("b").output)
  end)

  it("passes static params to the agent", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo", params = { output = "fixed" } } }))
    assert.equal("fixed", exec:run_of("a").output)
  end)

  it("cancels an agent that outlives timeout_ms at the deadline", function()
    local exec = h.run(h.flat("sequential", {
      { id = "slow", agent = "delay", params = { ms = 5000 }, timeout_ms = 50 },
    }))
    local sr = exec:run_of("slow")
    assert.equal("failed", exec.status)
    assert.equal("failed", sr.status)
    assert.equal("timeout after 50 ms", sr.error)
    assert.is_true(sr.latency_ms >= 49 and sr.latency_ms < 1000, "latency " .. sr.latency_ms) -- cut at 50
    assert.equal(0, sched.live_tasks() - 1) -- only the spec's own task is left
  end)

  it("retries up to max_attempts and records the attempts", function()
    local exec = h.run(h.flat("sequential", {
      { id = "f", agent = "flaky", params = { fail_times = 2 }, retry = { max_attempts = 3 } },
    }))
    local sr = exec:run_of("f")
    assert.equal("completed", sr.status)
    assert.equal(3, sr.attempts)
    assert.same({ attempt = 3 }, sr.output)
  end)

  it("fails after the last attempt with the last error", function()
    local exec = h.run(h.flat("sequential", {
      { id = "f", agent = "flaky", params = { fail_times = 5 }, retry = { max_attempts = 2 } },
    }))
    assert.equal("failed", exec:run_of("f").status)
    assert.equal(2, exec:run_of("f").attempts)
    assert.matches("attempt 2", exec:run_of("f").error)
  end)

  it("backs off exponentially between attempts", function()
    local t0 = sched.now()
    local exec, events = h.run(h.flat("sequential", {
      { id = "f", agent = "flaky", params = { fail_times = 2 }, retry = { max_attempts = 3, backoff_ms = 20 } },
    }))
    local took = sched.now() - t0
    assert.equal("completed", exec.status)
    assert.is_true(took >= 60 and took < 1000, "took " .. took) -- 20 + 40 (the bound is for a loaded machine)
    local retries = 0
    for _, e in ipairs(events) do if e.type == "step.retry" then retries = retries + 1 end end
    assert.equal(2, retries)
  end)

  it("computes backoff with cap and jitter", function()
    assert.equal(0, step.backoff_ms({ backoff_ms = 0 }, 3))
    assert.equal(100, step.backoff_ms({ backoff_ms = 100 }, 1))
    assert.equal(400, step.backoff_ms({ backoff_ms = 100 }, 3))
    assert.equal(250, step.backoff_ms({ backoff_ms = 100, max_backoff_ms = 250 }, 3))
    for _ = 1, 50 do
      local ms = step.backoff_ms({ backoff_ms = 100, jitter = 0.5 }, 2)
      assert.is_true(ms >= 100 and ms <= 200)
      local full = step.backoff_ms({ backoff_ms = 100, jitter = true }, 1)
      assert.is_true(full >= 0 and full <= 100)
    end
  end)

  it("on_failure = abort fails the execution and skips what did not run", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "fail", params = { message = "nope" } },
      { id = "b", agent = "echo" },
    }))
    assert.equal("failed", exec.status)
    assert.equal("step a failed: nope", exec.error)
    assert.equal("skipped", exec:run_of("b").status)
  end)

  it("on_failure = continue lets the execution go on", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "fail", on_failure = "continue" },
      { id = "b", agent = "echo", params = { output = "B" } },
    }))
    assert.equal("completed", exec.status)
    assert.equal("failed", exec:run_of("a").status)
    assert.equal("B", exec.output)
  end)

  it("on_failure = fallback answers from the fallback chain", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "fail", on_failure = "fallback", output_key = "res" },
      { id = "a_fb1", agent = "fail", is_fallback = true, fallback_for = "a" },
      { id = "a_fb2", agent = "echo", params = { output = "from fb2" }, is_fallback = true, fallback_for = "a" },
      { id = "b", agent = "echo", dependencies = { "a" } },
    }))
    assert.equal("completed", exec.status)
    assert.equal("a_fb2", exec:run_of("a").answered_by)
    assert.equal("from fb2", exec:run_of("b").output.res)
    assert.equal("from fb2", exec:run_of("b").output.dep_a)
    assert.equal("failed", exec:run_of("a_fb1").status)
  end)

  it("aborts when the whole fallback chain fails", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "fail", on_failure = "fallback" },
      { id = "a_fb", agent = "fail", is_fallback = true, fallback_for = "a" },
    }))
    assert.equal("failed", exec.status)
    assert.matches("all 1 fallbacks failed", exec.error)
  end)

  it("a Lua error in an agent fails the step with message and traceback, not the process", function()
    local exec = h.run(h.flat("sequential", { { id = "x", agent = "boom" } }))
    local sr = exec:run_of("x")
    assert.equal("failed", sr.status)
    assert.matches("attempt to index", sr.error)
    assert.matches("boom.lua:%d+", sr.error)
    assert.matches("stack traceback", sr.error)
  end)

  it("runs attempts inside an outer deadline scope too: timeout, retries and errors hold", function()
    local exec = h.run({ name = "s", strategy = "scoped_strategy", steps = {
      { id = "a", agent = "echo", params = { output = "first" } },
      { id = "f", agent = "flaky", params = { fail_times = 1 }, retry = { max_attempts = 2 } },
      { id = "slow", agent = "delay", params = { ms = 5000 }, timeout_ms = 40, on_failure = "continue" },
      { id = "x", agent = "boom", on_failure = "continue" },
    } })
    assert.equal("first", exec:run_of("a").output)
    assert.same({ attempt = 2 }, exec:run_of("f").output)
    assert.equal("timeout after 40 ms", exec:run_of("slow").error)
    assert.is_true(exec:run_of("slow").latency_ms < 1000, "latency " .. exec:run_of("slow").latency_ms) -- not 5000
    assert.matches("boom.lua:%d+", exec:run_of("x").error)
  end)

  it("a Lua error in a strategy fails the execution with the message", function()
    local exec = h.run({ name = "s", strategy = "broken_strategy", steps = { { id = "a", agent = "echo" } } })
    assert.equal("failed", exec.status)
    assert.matches("strategy failed: .*strategy exploded", exec.error)
    assert.equal("completed", exec:run_of("a").status)
  end)

  it("records tokens, cost, agent and version per step and totals per execution", function()
    local engine = h.engine()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "metered", params = { tokens = 7, cost = 0.25 } },
      { id = "b", agent = "metered", params = { tokens = 5, cost = 0.5 } },
    }), {}, { engine = engine })
    local a = exec:run_of("a")
    assert.equal(7, a.tokens)
    assert.equal(0.25, a.cost)
    assert.equal("metered", exec:record().steps[1].agent)
    assert.equal(engine.registry:snapshot().agents.metered.version, a.agent_version)
    assert.matches("^%x+$", a.agent_version)
    assert.equal(12, exec.tokens)
    assert.equal(0.75, exec.cost)
    assert.is_number(exec.latency_ms)
    local rec = exec:record()
    assert.equal(12, rec.metrics.tokens)
  end)

  it("records each step's input when settings.keep_inputs says so, and only then", function()
    local steps = { { id = "a", agent = "echo", output_key = "first" }, { id = "b", agent = "echo", dependencies = { "a" } } }
    local exec = h.run(h.flat("sequential", steps, { keep_inputs = true }), { job_name = "J" })
    local rec = exec:record()
    assert.equal("J", rec.steps[1].input.job_name)
    assert.equal("J", rec.steps[2].input.first.job_name) -- its dependency's output, under its output_key
    exec = h.run(h.flat("sequential", steps), { job_name = "J" })
    assert.is_nil(exec:record().steps[2].input)
  end)
end)
