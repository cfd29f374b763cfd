-- Prometheus exposition and the engine's metrics.
local metrics = require "chorus.metrics"
local h = require "spec.helpers"

describe("metrics", function()
  it("renders counters, gauges and histograms in the text format", function()
    local reg = metrics.new()
    local c = reg:counter("x_total", "Things.", { "kind" })
    c:inc(1, "a")
    c:inc(2, 'q"uote')
    reg:gauge("g", "A gauge.", {}, function() return 7 end)
    local hist = reg:histogram("lat_ms", "Latency.", {}, { 10, 100 })
    hist:observe(5)
    hist:observe(50)
    hist:observe(500)
    local text = reg:render()
    assert.matches('# TYPE x_total counter\n', text, 1, true)
    assert.matches('x_total{kind="a"} 1\n', text, 1, true)
    assert.matches('x_total{kind="q\\"uote"} 2\n', text, 1, true)
    assert.matches("g 7\n", text, 1, true)
    assert.matches('lat_ms_bucket{le="10"} 1\n', text, 1, true)
    assert.matches('lat_ms_bucket{le="100"} 2\n', text, 1, true)
    assert.matches('lat_ms_bucket{le="+Inf"} 3\n', text, 1, true)
    assert.matches("lat_ms_count 3\n", text, 1, true)
    assert.matches("lat_ms_sum 555\n", text, 1, true)
    assert.has_error(function() reg:counter("x_total", "again") end)
  end)

  it("counts every execution and step transition of an engine", function()
    local engine = h.engine()
    local reg = metrics.engine(metrics.new(), engine)
    h.run(h.flat("sequential", { { id = "a", agent = "echo" }, { id = "b", agent = "fail", on_failure = "continue" } }),
      {}, { engine = engine })
    local text = reg:render()
    assert.matches('chorus_execution_transitions_total{status="completed"} 1', text, 1, true)
    assert.matches('chorus_step_transitions_total{agent="echo",status="completed"} 1', text, 1, true)
    assert.matches('chorus_step_transitions_total{agent="fail",status="failed"} 1', text, 1, true)
    assert.matches('chorus_step_latency_ms_count{agent="echo",status="completed"} 1', text, 1, true)
  end)

  it("shows the Lua heap and what the memory store archived", function()
    local memory = require "chorus.store.memory"
    local engine = h.engine({ store = memory.new({ max_finished = 10, recent = 1 }) })
    local reg = metrics.engine(metrics.new(), engine)
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    for _ = 1, 4 do engine:execute(cfg, {}):wait() end
    local text = reg:render()
    assert.matches("chorus_store_archived_executions 3\n", text, 1, true)
    local bytes = tonumber(text:match("chorus_store_archive_bytes (%d+)"))
    assert.is_true(bytes > 3 * 200, tostring(bytes)) -- three records of a few hundred bytes
    local heap = tonumber(text:match("chorus_lua_heap_bytes (%d+)"))
    assert.is_true(heap > 100000, tostring(heap))
  end)
end)
