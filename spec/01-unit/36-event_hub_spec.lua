-- The event hub's history: what a late WebSocket subscriber can replay.
local hub_mod = require "chorus.events.hub"
local bus_mod = require "chorus.events.bus"
local h = require "spec.helpers"

local function ended(trace)
  return { type = "execution.status", trace_id = trace, status = "completed" }
end

describe("event hub", function()
  it("keeps the history of the last keep_finished finished executions and of every running one", function()
    local bus = bus_mod.new()
    local hub = hub_mod.new({ bus = bus, node_id = "n1", keep_finished = 3 })
    bus:emit({ type = "execution.status", trace_id = "running", status = "running" })
    for i = 1, 10 do
      bus:emit({ type = "step.status", trace_id = "t" .. i, status = "completed" })
      bus:emit(ended("t" .. i))
    end
    for i = 1, 7 do assert.is_nil(hub:history("t" .. i), "t" .. i) end
    for i = 8, 10 do
      local events = hub:history("t" .. i)
      assert.equal(2, #events)
      assert.equal("n1", events[2].node)
    end
    assert.equal(1, #hub:history("running"))
  end)

  it("an execution that finishes twice (resumed elsewhere) keeps its history while it is among the last", function()
    local hub = hub_mod.new({ node_id = "n1", keep_finished = 2 })
    hub:local_event(ended("a"))
    hub:local_event(ended("b"))
    hub:local_event(ended("a"))
    assert.equal(2, #hub:history("a"))
    hub:local_event(ended("c"))
    assert.equal(2, #hub:history("a"), "a finished last but one")
    assert.is_nil(hub:history("b"))
  end)

  it("keep_finished = 0 keeps no finished history; max_events bounds one execution's", function()
    local hub = hub_mod.new({ node_id = "n1", keep_finished = 0, max_events = 3 })
    for _ = 1, 5 do hub:local_event({ type = "step.delta", trace_id = "x" }) end
    assert.equal(3, #hub:history("x"))
    hub:local_event(ended("x"))
    assert.is_nil(hub:history("x"))
  end)

  it("status events carry the execution's ids, time and an increasing seq", function()
    local exec, events = h.run(h.flat("sequential", { { id = "a", agent = "echo" }, { id = "b", agent = "echo" } }))
    local last = 0
    for _, e in ipairs(events) do
      assert.equal(exec.id, e.execution_id)
      assert.equal(exec.trace_id, e.trace_id)
      assert.is_number(e.at)
      assert.is_true(e.seq > last)
      last = e.seq
    end
    assert.equal("echo", events[2].agent)
    assert.equal("a", events[2].step_id)
    assert.equal("running", events[2].status)
    assert.equal("pending", events[2].previous)
  end)
end)
