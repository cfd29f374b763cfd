-- What LLM workloads need around their steps: budgets per execution, a
-- step result cache, and rate limits per agent (in-process here; across
-- nodes through Redis in spec/02-integration).
local h = require "spec.helpers"
local sched = require "chorus.sched"
local step_cache = require "chorus.engine.step_cache"
local rate_limit = require "chorus.engine.rate_limit"
local cluster = require "chorus.run.cluster"

local function engine_with(agents)
  local dir = h.tmpdir()
  for name, body in pairs(agents) do
    h.write(("%s/agents/%s.lua"):format(dir, name), body)
  end
  return h.engine({ scripts = { dir } })
end

describe("budgets", function()
  local engine = engine_with({
    spender = [[return { name = "spender", call = function(_, ctx)
      return { ok = true }, { tokens = ctx.params.tokens, cost = ctx.params.cost } end }]],
    streamer = [[local sched = require "chorus.sched"
      return { name = "streamer", call = function(_, ctx)
        for i = 1, 100 do
          ctx:usage({ tokens = i * 100 })
          local ok, why = sched.sleep(5)
          if not ok then return nil, why end
        end
        return "done", { tokens = 10000 }
      end }]],
  })

  it("a step that takes the tokens over max_tokens fails the execution; nothing new starts", function()
    local exec = h.run(h.flat("sequential", {
      { id = "a", agent = "spender", params = { tokens = 600 } },
      { id = "b", agent = "spender", params = { tokens = 634 } },
      { id = "c", agent = "spender", params = { tokens = 1 } },
    }, { max_tokens = 1000 }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.equal("budget exceeded: tokens 1,234 > 1,000", exec.error)
    assert.equal("skipped", exec:run_of("c").status)
  end)

  it("max_cost too, and a streaming step is stopped as its usage arrives, with the others in flight", function()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "spender", params = { tokens = 1, cost = 0.75 } } },
      { max_cost = 0.5 }), {}, { engine = engine })
    assert.equal("budget exceeded: cost 0.75 > 0.5", exec.error)
    local t0 = sched.now()
    exec = h.run(h.flat("parallel", {
      { id = "s", agent = "streamer" },
      { id = "d", agent = "delay", params = { ms = 5000 } },
    }, { max_tokens = 1000 }), {}, { engine = engine })
    assert.is_true(sched.now() - t0 < 1000, "took " .. (sched.now() - t0))
    assert.equal("failed", exec.status)
    assert.equal("budget exceeded: tokens 1,100 > 1,000", exec.error)
    assert.equal("cancelled", exec:run_of("s").status)
    assert.equal("cancelled", exec:run_of("d").status)
  end)
end)

describe("step cache (in process)", function()
  before_each(function() cluster.configure({}) step_cache.reset() end)

  it("a second run of the same step and input is a hit: the agent is not called, the record says so", function()
    local p = h.probe()
    local engine = h.engine()
    local doc = h.flat("sequential", { { id = "c", agent = "counter", cache = { ttl_s = 60 } } })
    local first = h.run(doc, { q = "same" }, { engine = engine })
    local second = h.run(doc, { q = "same" }, { engine = engine })
    local third = h.run(doc, { q = "other" }, { engine = engine })
    assert.equal(2, #p.calls)
    local sr = second:run_of("c")
    assert.is_true(sr.cached)
    assert.equal(first.id, sr.cached_from)
    assert.same(first:run_of("c").output, sr.output)
    assert.is_nil(third:run_of("c").cached)
    assert.equal(1, step_cache.stats.hits)
    assert.equal(2, step_cache.stats.misses)
    assert.is_true(second:record().steps[1].cached)
  end)

  it("a Redis that is down is a counted miss, never a failed step", function()
    cluster.configure({ redis_url = "redis://127.0.0.1:1/0" })
    local exec = h.run(h.flat("sequential", { { id = "c", agent = "echo", cache = { ttl_s = 60 } } }), { q = 1 })
    assert.equal("completed", exec.status)
    exec = h.run(h.flat("sequential", { { id = "c", agent = "echo", cache = { ttl_s = 60 } } }), { q = 1 })
    assert.equal("completed", exec.status)
    assert.is_nil(exec:run_of("c").cached)
    assert.equal(2, step_cache.stats.misses)
    cluster.configure({})
  end)
end)

describe("rate limits (in process)", function()
  before_each(function() cluster.configure({}) rate_limit.reset() end)

  it("holds an agent to per_second after its burst, and records the wait on the step", function()
    local t0 = sched.now()
    local steps = {}
    for i = 1, 6 do steps[i] = { id = "s" .. i, agent = "echo" } end
    local exec = h.run(h.flat("parallel", steps, { rate_limits = { echo = { per_second = 10, burst = 2 } } }), {})
    local took = sched.now() - t0
    assert.equal("completed", exec.status)
    -- 2 at once, then 4 more at 10/s: about 400 ms
    assert.is_true(took >= 350, "took " .. took)
    local waited = 0
    for i = 1, 6 do waited = waited + (exec:run_of("s" .. i).rate_wait_ms or 0) end
    assert.is_true(waited > 0)
  end)

  it("the wait counts against the step's timeout", function()
    local steps = {}
    for i = 1, 3 do steps[i] = { id = "s" .. i, agent = "echo", timeout_ms = 50, on_failure = "continue" } end
    local exec = h.run(h.flat("parallel", steps, { rate_limits = { echo = { per_second = 1, burst = 1 } } }), {})
    local timed_out = 0
    for i = 1, 3 do
      if (exec:run_of("s" .. i).error or ""):match("^timeout after 50 ms") then timed_out = timed_out + 1 end
    end
    assert.equal(2, timed_out)
  end)
end)
