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

  it("a subscriber that raises is logged and dropped; the others and the bridge still get the event", function()
    require("spec.support.log_guard").expect("was dropped: boom") -- on purpose
    local published, got = {}, {}
    local bridge = { publish = function(_, e) published[#published + 1] = e.type end,
      watch = function() end, unwatch = function() end }
    local hub = hub_mod.new({ node_id = "n1", bridge = bridge })
    hub:subscribe("t", function() error("boom", 0) end)
    hub:subscribe("t", function(e) got[#got + 1] = e.type end)
    hub:subscribe("*", function(e) got[#got + 1] = "*" .. e.type end)
    hub:local_event({ type = "step.delta", trace_id = "t" })
    hub:local_event(ended("t"))
    table.sort(got)
    assert.same({ "*execution.status", "*step.delta", "execution.status", "step.delta" }, got)
    assert.same({ "step.delta", "execution.status" }, published)
    assert.equal(1, hub.stats.errors)
    assert.equal(2, hub.nsubs)
  end)

  -- A WebSocket client whose sending raises (a defect) is told and closed
  -- (1011), not left waiting for events that will not come.
  it("closes a WebSocket client whose event could not be sent, with an error notice", function()
    require("spec.support.log_guard").expect("was dropped: encoder blew up") -- on purpose
    local sched = require "chorus.sched"
    local json = require "chorus.json"
    local wsc = require("chorus.api.ws")._client
    local sent, closed = {}, nil
    local ws = {
      send_json = function() error("encoder blew up", 0) end,
      send = function(_, text) sent[#sent + 1] = text return true end,
      close = function(_, code) closed = code end,
      receive = function() return sched.sleep(60000) end,
      is_open = function() return closed == nil end,
      queued = function() return 0 end,
    }
    local c = wsc.new(ws, 10)
    c.live = true
    local hub = hub_mod.new({ node_id = "n1" })
    hub:subscribe("t", wsc.subscriber(c))
    local waiting = sched.spawn(wsc.serve, c)
    sched.sleep(0)
    hub:local_event({ type = "step.delta", trace_id = "t", seq = 1 })
    assert.is_true((waiting:join()))
    assert.equal(1011, closed)
    local notice = json.decode(sent[1])
    assert.equal("error", notice.type)
    assert.equal("internal", notice.error.code)
    assert.equal(0, hub.nsubs)
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
