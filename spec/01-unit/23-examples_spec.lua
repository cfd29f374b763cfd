-- The examples of custom scripts (examples/scripts) run as documented:
-- a race strategy, an agent over HTTP, a median aggregation rule.
local h = require "spec.helpers"
local json = require "chorus.json"
local http = require "chorus.http.server"
local sched = require "chorus.sched"

local function example(name)
  local f = assert(io.open(h.root .. "/examples/" .. name .. ".json"))
  local doc = json.decode(f:read("*a"))
  f:close()
  return doc
end

local engine = h.engine({ scripts = { h.root .. "/examples/scripts" } })

describe("examples", function()
  it("race: the first success answers, the others are cancelled", function()
    local t0 = sched.now()
    local exec = h.run(example("race"), {}, { engine = engine })
    assert.is_true(sched.now() - t0 < 1000)
    assert.equal("completed", exec.status)
    assert.equal("fast", exec.output)
    assert.equal("fast_path", exec.answered_by)
    assert.equal("cancelled", exec:run_of("slow_path").status)
    assert.equal("failed", exec:run_of("broken_path").status)
  end)

  it("race: when every step fails, the execution fails with all their errors", function()
    local exec = h.run(h.flat("race", { { id = "a", agent = "fail" }, { id = "b", agent = "fail" } }), {},
      { engine = engine })
    assert.equal("failed", exec.status)
    assert.matches("no step answered %(.*a: failed on purpose.*b: failed on purpose", exec.error)
  end)

  it("median: the median of the answers, agreement within the tolerance", function()
    local exec = h.run(example("median"), {}, { engine = engine })
    assert.equal("completed", exec.status)
    assert.equal(45, exec.output)
    assert.same({ agreed = 2, total = 3 }, { agreed = exec.consensus.window.agreed, total = exec.consensus.window.total })
  end)

  it("weather: an agent over HTTP, with the token, the traceparent, and retries of a 503", function()
    local seen, calls = {}, 0
    local srv = assert(http.listen({ port = 0 }, function(req)
      calls = calls + 1
      seen = req
      if calls == 1 then return 503, { ["retry-after"] = "0" }, "busy" end
      return 200, { ["content-type"] = "application/json" }, { temperature_c = 21.5, sky = "clear", extra = 1 }
    end))
    local doc = example("weather")
    doc.steps[1].params = { url = ("http://127.0.0.1:%d/now?city={{city}}"):format(srv.port) }
    local exec = h.run(doc, { city = "Lisbon" }, { engine = engine })
    srv:close({ grace_ms = 0 })
    assert.equal("completed", exec.status)
    assert.same({ city = "Lisbon", temperature_c = 21.5, sky = "clear" }, exec.output)
    assert.equal(2, exec:run_of("now").attempts)
    assert.equal("city=Lisbon", seen.query)
    assert.matches("^00%-" .. exec.trace_id:gsub("%-", "") .. "%-%x+%-01$", seen.headers.traceparent)
  end)
end)
