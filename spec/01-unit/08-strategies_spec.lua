-- The four built-in strategies.
local h = require "spec.helpers"

describe("strategies", function()
  it("sequential runs steps one at a time in dependency order", function()
    local probe = h.probe()
    local exec = h.run(h.flat("sequential", {
      { id = "b", agent = "counter", dependencies = { "a" } },
      { id = "a", agent = "counter" },
      { id = "c", agent = "counter" },
    }))
    assert.equal("completed", exec.status)
    assert.same({ "a", "b", "c" }, probe.calls)
    assert.equal(1, probe.peak)
    assert.same({ n = 3, step = "c" }, exec.output)
  end)

  it("parallel honours dependencies and never exceeds parallel_limit", function()
    local probe = h.probe()
    local steps = {}
    for i = 1, 8 do steps[i] = { id = "s" .. i, agent = "counter", params = { ms = 5 } } end
    steps[9] = { id = "join", agent = "counter", dependencies = { "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8" } }
    local exec = h.run(h.flat("parallel", steps, { parallel_limit = 3 }))
    assert.equal("completed", exec.status)
    assert.equal(3, probe.peak)
    assert.equal("join", probe.calls[9])
    assert.same({ n = 9, step = "join" }, exec.output)
  end)

  it("parallel runs independent branches concurrently", function()
    local probe = h.probe()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "counter", params = { ms = 200 } },
      { id = "b", agent = "counter", params = { ms = 200 } },
      { id = "c", agent = "counter", dependencies = { "a", "b" } },
    }))
    assert.equal("completed", exec.status)
    assert.equal(2, probe.peak)
    assert.is_true(exec.latency_ms < 390, "latency " .. exec.latency_ms) -- one after the other: 405
  end)

  it("parallel abort cancels the steps in flight", function()
    local exec = h.run(h.flat("parallel", {
      { id = "slow", agent = "delay", params = { ms = 5000 } },
      { id = "bad", agent = "fail" },
    }))
    assert.equal("failed", exec.status)
    assert.equal("cancelled", exec:run_of("slow").status) -- a sibling ended it: not a failure of its own
    assert.equal("cancelled", exec:run_of("slow").error)
    assert.is_true(exec.latency_ms < 100)
  end)

  it("consensus aggregates a group by majority and reports agreed, total, score", function()
    local exec = h.run(h.flat("consensus", {
      { id = "a", agent = "echo", params = { output = { answer = "yes" } }, consensus_group = "g" },
      { id = "b", agent = "echo", params = { output = { answer = "yes" } }, consensus_group = "g" },
      { id = "c", agent = "echo", params = { output = { answer = "no" } }, consensus_group = "g" },
    }, { consensus_threshold = 0.6 }))
    assert.equal("completed", exec.status)
    assert.same({ answer = "yes" }, exec.output)
    local g = exec.consensus.g
    assert.equal(2, g.agreed)
    assert.equal(3, g.total)
    assert.near(2 / 3, g.score, 1e-9)
    assert.equal("majority", g.aggregator)
  end)

  it("consensus fails below the threshold", function()
    local exec = h.run(h.flat("consensus", {
      { id = "a", agent = "echo", params = { output = 1 }, consensus_group = "g" },
      { id = "b", agent = "echo", params = { output = 2 }, consensus_group = "g" },
    }, { consensus_threshold = 0.8 }))
    assert.equal("failed", exec.status)
    assert.matches("consensus not reached", exec.error)
  end)

  it("consensus counts failed members in the total but not as votes", function()
    local exec = h.run(h.flat("consensus", {
      { id = "a", agent = "echo", params = { output = 1 }, consensus_group = "g" },
      { id = "b", agent = "echo", params = { output = 1 }, consensus_group = "g" },
      { id = "c", agent = "fail", consensus_group = "g" },
    }, { consensus_threshold = 0.5 }))
    assert.equal("completed", exec.status)
    assert.equal(2, exec.consensus.g.agreed)
    assert.equal(3, exec.consensus.g.total)
  end)

  it("consensus uses the configured rule and feeds later steps", function()
    local exec = h.run(h.flat("consensus", {
      { id = "a", agent = "echo", params = { output = { x = 1 } }, consensus_group = "g" },
      { id = "b", agent = "echo", params = { output = { y = 2 } }, consensus_group = "g" },
      { id = "after", agent = "echo", dependencies = { "a" } },
    }, { aggregator = "merge", consensus_threshold = 0.5 }))
    assert.equal("completed", exec.status)
    assert.same({ x = 1, y = 2 }, exec.consensus.g.output)
    assert.same({ x = 1, y = 2 }, exec.output.consensus.g)
  end)

  it("fallback returns the first alternative that answers and records it", function()
    local exec = h.run(h.flat("fallback", {
      { id = "primary", agent = "fail" },
      { id = "secondary", agent = "echo", params = { output = "second" } },
      { id = "tertiary", agent = "echo", params = { output = "third" } },
    }))
    assert.equal("completed", exec.status)
    assert.equal("second", exec.output)
    assert.equal("secondary", exec.answered_by)
    assert.equal("skipped", exec:run_of("tertiary").status)
  end)

  it("fallback tries a step's own chain before the next alternative", function()
    local exec = h.run(h.flat("fallback", {
      { id = "primary", agent = "fail" },
      { id = "primary_fb", agent = "echo", params = { output = "chain" }, is_fallback = true, fallback_for = "primary" },
      { id = "other", agent = "echo", params = { output = "other" } },
    }))
    assert.equal("chain", exec.output)
    assert.equal("primary_fb", exec.answered_by)
  end)

  it("fallback moves on to the next alternative when a step's whole chain fails", function()
    local exec = h.run(h.flat("fallback", {
      { id = "primary", agent = "fail" },
      { id = "primary_fb", agent = "fail", is_fallback = true, fallback_for = "primary" },
      { id = "other", agent = "echo", params = { output = "other" } },
    }))
    assert.equal("completed", exec.status)
    assert.equal("other", exec.output)
    assert.equal("other", exec.answered_by)
    assert.equal("failed", exec:run_of("primary_fb").status)
  end)

  it("fallback fails when nothing answers, naming each failure", function()
    local exec = h.run(h.flat("fallback", {
      { id = "a", agent = "fail", params = { message = "down" } },
      { id = "b", agent = "fail", params = { message = "also down" } },
    }))
    assert.equal("failed", exec.status)
    assert.matches("no alternative answered %(a: down; b: also down%)", exec.error)
  end)
end)
