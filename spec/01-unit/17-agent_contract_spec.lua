-- The agent's side of the contract: how a failure says whether to retry
-- and when, usage of failed attempts, streamed deltas and the W3C
-- traceparent of an attempt.
local h = require "spec.helpers"
local sched = require "chorus.sched"

-- an engine with one agent whose call is `body` (Lua source of a function)
local function engine_with(name, body)
  local dir = h.tmpdir()
  h.write(("%s/agents/%s.lua"):format(dir, name), ([[
local sched = require "chorus.sched"
local calls = 0
return { name = %q, call = %s }
]]):format(name, body))
  return h.engine({ scripts = { dir } })
end

describe("agent contract", function()
  it("nil, {tokens = ...} is an error without a table address, and its usage counts", function()
    local engine = engine_with("usage_only", "function() return nil, { tokens = 7, cost = 0.5 } end")
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "usage_only" } }), {}, { engine = engine })
    local sr = exec:run_of("s")
    assert.equal("failed", sr.status)
    assert.equal("agent returned no output", sr.error)
    assert.equal(7, sr.tokens)
    assert.equal(0.5, sr.cost)
    assert.equal(7, exec.tokens)
  end)

  it("nil, err, {retry = false} ends the step without using the other attempts", function()
    local engine = engine_with("no_retry", [[function() calls = calls + 1
      return nil, "HTTP 400: model not found", { retry = false, tokens = 3 } end]])
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "no_retry", retry = { max_attempts = 4 } } }),
      {}, { engine = engine })
    local sr = exec:run_of("s")
    assert.equal("failed", sr.status)
    assert.equal(1, sr.attempts)
    assert.equal("HTTP 400: model not found", sr.error)
    assert.equal(3, sr.tokens)
  end)

  it("nil, err, {retry_after_ms = n} waits at least n before the next attempt", function()
    local engine = engine_with("busy", [[function(_, ctx)
      if ctx.attempt == 1 then return nil, "HTTP 429", { retry_after_ms = 120 } end
      return { attempt = ctx.attempt }
    end]])
    local t0 = sched.now()
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "busy",
      retry = { max_attempts = 2, backoff_ms = 1 } } }), {}, { engine = engine })
    assert.equal("completed", exec.status)
    assert.same({ attempt = 2 }, exec:run_of("s").output)
    assert.is_true(sched.now() - t0 >= 115, "waited " .. (sched.now() - t0))
  end)

  it("ctx:delta pieces of one loop turn reach subscribers as one step.delta event, in order", function()
    local engine = engine_with("streamer", [[function(_, ctx)
      ctx:delta("Hel") ctx:delta("lo")
      sched.sleep(5)
      ctx:delta(", world")
      return "Hello, world"
    end]])
    local exec, events = h.run(h.flat("sequential", { { id = "s", agent = "streamer" } }), {}, { engine = engine })
    assert.equal("completed", exec.status)
    local deltas = {}
    for _, e in ipairs(events) do
      if e.type == "step.delta" then
        deltas[#deltas + 1] = e.delta
        assert.equal("s", e.step_id)
        assert.equal(1, e.attempt)
        assert.equal(exec.trace_id, e.trace_id)
      end
    end
    assert.same({ "Hello", ", world" }, deltas)
  end)

  -- One task flushes every execution's pieces each loop turn: one
  -- execution's failure there is logged and does not hold up another's.
  it("an execution whose pieces fail to flush does not hold up another's", function()
    require("spec.support.log_guard").expect("were lost: boom") -- on purpose
    local step = require "chorus.engine.step"
    local engine = engine_with("pair", [[function(_, ctx)
      ctx:delta("a")
      sched.sleep(5)
      ctx:delta("b")
      return "ok"
    end]])
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "s", agent = "pair" } })))
    local got = {}
    local tok = engine.bus:subscribe(function(e)
      if e.type == "step.delta" then got[e.trace_id] = (got[e.trace_id] or "") .. e.delta end
    end)
    local real, bad = step.flush_deltas, nil
    step.flush_deltas = function(exec) -- fails bad's first flush (its "a")
      if exec == bad then
        bad = nil
        error("boom", 0)
      end
      return real(exec)
    end
    local ok, err = pcall(function()
      local failing = engine:execute(cfg, {})
      bad = failing
      local good = engine:execute(cfg, {})
      failing:wait()
      good:wait()
      assert.equal("completed", failing.status)
      assert.equal("completed", good.status)
      assert.equal("ab", got[good.trace_id])
      assert.equal("b", got[failing.trace_id])
    end)
    step.flush_deltas = real
    engine.bus:unsubscribe(tok)
    assert(ok, err)
  end)

  it("ctx:traceparent() is a W3C header carrying the execution's trace id", function()
    local engine = engine_with("tracer", "function(_, ctx) return ctx:traceparent() end")
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "tracer" } }), {}, { engine = engine })
    local tp = exec:run_of("s").output
    assert.matches("^00%-" .. exec.trace_id:gsub("%-", "") .. "%-%x+%-01$", tp)
    assert.equal(16, #tp:match("^00%-%x+%-(%x+)%-01$"))
  end)
end)
