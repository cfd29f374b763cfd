-- Prometheus exposition (chorus.metrics), the engine's series
-- (chorus.metrics.engine), the HTTP labels (chorus.metrics.http) and the
-- process series. The text is checked with promtool against a real
-- server in spec/02-integration/07-serve/metrics_spec.lua.
local metrics = require "chorus.metrics"
local h = require "spec.helpers"

-- sample(text, series) -> the value of that exact series line, or nil
local function sample(text, series)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then return tonumber(line:sub(#series + 2)) end
  end
end

describe("metrics", function()
  it("renders counters, gauges and histograms in the text format", function()
    local reg = metrics.new()
    local c = reg:counter("x_total", "Things.", { "kind" })
    c:inc(1, "a")
    c:inc(2, 'q"uote')
    c:inc(1, "back\\slash\nnewline")
    reg:gauge("g", "A gauge.", {}, function() return 7 end)
    local hist = reg:histogram("lat_seconds", "Latency.", { "route" }, { 0.01, 0.1 })
    hist:observe(0.005, "/a/{id}")
    hist:observe(0.05, "/a/{id}")
    hist:observe(0.1, "/a/{id}")
    hist:observe(5, "/a/{id}")
    local text = reg:render()
    assert.matches('# HELP x_total Things.\n# TYPE x_total counter\n', text, 1, true)
    assert.matches('x_total{kind="a"} 1\n', text, 1, true)
    assert.matches('x_total{kind="q\\"uote"} 2\n', text, 1, true)
    assert.matches('x_total{kind="back\\\\slash\\nnewline"} 1\n', text, 1, true)
    assert.matches("# TYPE g gauge\ng 7\n", text, 1, true)
    -- cumulative buckets; a value equal to a bound is in its bucket
    assert.matches('lat_seconds_bucket{route="/a/{id}",le="0.01"} 1\n', text, 1, true)
    assert.matches('lat_seconds_bucket{route="/a/{id}",le="0.1"} 3\n', text, 1, true)
    assert.matches('lat_seconds_bucket{route="/a/{id}",le="+Inf"} 4\n', text, 1, true)
    assert.matches('lat_seconds_count{route="/a/{id}"} 4\n', text, 1, true)
    assert.equal(5.155, sample(text, 'lat_seconds_sum{route="/a/{id}"}'))
  end)

  it("escapes HELP text and keeps non-integers exact", function()
    local reg = metrics.new()
    reg:gauge("g", "Line one\nline \\two.", {}, function() return 0.1 + 0.2 end)
    reg:gauge("big", "Big.", {}, function() return 2 ^ 53 - 1 end)
    reg:gauge("huge", "Huge.", {}, function() return 1e300 end)
    local text = reg:render()
    assert.matches("# HELP g Line one\\nline \\\\two.\n", text, 1, true)
    assert.matches("\ng 0.3\n", text, 1, true)
    assert.matches("\nbig 9007199254740991\n", text, 1, true)
    assert.matches("\nhuge 1e+300\n", text, 1, true)
  end)

  it("enforces the naming conventions where a metric is registered", function()
    local reg = metrics.new()
    assert.has_error(function() reg:counter("things", "No _total.") end)
    assert.has_error(function() reg:gauge("things_total", "A gauge named like a counter.") end)
    assert.has_error(function() reg:histogram("wait_total", "Same.", {}, { 1 }) end)
    assert.has_error(function() reg:histogram("wait_seconds", "Decreasing.", {}, { 1, 0.5 }) end)
    assert.has_error(function() reg:histogram("wait_seconds", "No buckets.", {}) end)
    assert.has_error(function() reg:histogram("wait_seconds", "le is the format's.", { "le" }, { 1 }) end)
    assert.has_error(function() reg:gauge("bad-name", "Dash.") end)
    assert.has_error(function() reg:gauge("g", "Bad label.", { "a-b" }) end)
    assert.has_error(function() reg:gauge("g", "Reserved label.", { "__x" }) end)
    assert.has_error(function() reg:gauge("g", "") end)
    reg:gauge("g", "Fine.")
    assert.has_error(function() reg:gauge("g", "Twice.") end)
  end)

  it("reads collectors at scrape time: a number, rows, or nothing when it fails", function()
    local reg = metrics.new()
    local stats = { sent = 3, ok = 2, bad = 1 }
    reg:counter("sent_total", "Sent.", {}, function() return stats.sent end)
    reg:counter("out_total", "By outcome.", { "outcome" }, function()
      return { { "ok", stats.ok }, { "bad", stats.bad } }
    end)
    reg:gauge("broken", "Raises.", {}, function() error("boom") end)
    reg:gauge("absent", "Nil.", {}, function() return nil end)
    local text = reg:render()
    assert.equal(3, sample(text, "sent_total"))
    assert.equal(2, sample(text, 'out_total{outcome="ok"}'))
    assert.equal(1, sample(text, 'out_total{outcome="bad"}'))
    assert.matches("# TYPE broken gauge\n# HELP absent", text, 1, true)
    stats.sent = 10
    assert.equal(10, sample(reg:render(), "sent_total"))
  end)

  it("counts executions, steps, durations in seconds, tokens and cost from the engine's bus", function()
    local engine = h.engine()
    local reg = require("chorus.metrics.engine").register(metrics.new(), engine)
    h.run(h.flat("sequential", {
      { id = "a", agent = "echo" },
      { id = "m", agent = "metered", params = { tokens = 7, cost = 0.25 } },
      { id = "b", agent = "fail", on_failure = "continue" },
      { id = "d", agent = "delay", params = { ms = 30 } },
    }), {}, { engine = engine })
    local text = reg:render()
    assert.equal(1, sample(text, 'chorus_execution_transitions_total{status="completed"}'))
    assert.equal(1, sample(text, 'chorus_step_transitions_total{agent="echo",status="completed"}'))
    assert.equal(1, sample(text, 'chorus_step_transitions_total{agent="fail",status="failed"}'))
    assert.equal(1, sample(text, 'chorus_step_duration_seconds_count{agent="echo",status="completed"}'))
    assert.equal(1, sample(text, 'chorus_step_duration_seconds_count{agent="fail",status="failed"}'))
    -- seconds, not ms: the 30 ms sleep is between 0.025 and 0.25 s
    local d = sample(text, 'chorus_step_duration_seconds_sum{agent="delay",status="completed"}')
    assert.is_true(d >= 0.025 and d < 0.25, tostring(d))
    assert.equal(0, sample(text, 'chorus_step_duration_seconds_bucket{agent="delay",status="completed",le="0.025"}'))
    assert.equal(1, sample(text, 'chorus_execution_duration_seconds_count{config="spec",status="completed"}'))
    local e = sample(text, 'chorus_execution_duration_seconds_sum{config="spec",status="completed"}')
    assert.is_true(e >= d and e < 5, tostring(e))
    assert.equal(7, sample(text, 'chorus_step_tokens_total{agent="metered",config="spec"}'))
    assert.equal(0.25, sample(text, 'chorus_step_cost_total{agent="metered",config="spec"}'))
    assert.is_nil(sample(text, 'chorus_step_tokens_total{agent="echo",config="spec"}'))
    assert.equal(1, sample(text, "chorus_build_info{version=\"" .. require("chorus.native").version .. "\",luajit=\""
      .. jit.version .. " (" .. require("chorus.native").luajit_branch .. ")\"}"))
  end)

  it("counts step cache lookups and rate-limit waits from their events", function()
    local engine = h.engine()
    local reg = require("chorus.metrics.engine").register(metrics.new(), engine)
    local text = reg:render()
    -- registered before any event: HELP and TYPE, no sample
    assert.matches("# TYPE chorus_step_cache_requests_total counter\n# HELP", text, 1, true)
    assert.matches("# TYPE chorus_rate_limit_wait_seconds histogram\n# HELP", text, 1, true)
    engine.bus:emit({ type = "step.cache", agent = "llm", hit = true })
    engine.bus:emit({ type = "step.cache", agent = "llm", hit = true })
    engine.bus:emit({ type = "step.cache", agent = "llm", hit = false })
    engine.bus:emit({ type = "step.rate_limited", agent = "llm", wait_ms = 1500 })
    engine.bus:emit({ type = "step.rate_limited", agent = "llm", wait_ms = "nonsense" })
    text = reg:render()
    assert.equal(2, sample(text, 'chorus_step_cache_requests_total{agent="llm",result="hit"}'))
    assert.equal(1, sample(text, 'chorus_step_cache_requests_total{agent="llm",result="miss"}'))
    assert.equal(1, sample(text, 'chorus_rate_limit_wait_seconds_count{agent="llm"}'))
    assert.equal(1.5, sample(text, 'chorus_rate_limit_wait_seconds_sum{agent="llm"}'))
    assert.equal(0, sample(text, 'chorus_rate_limit_wait_seconds_bucket{agent="llm",le="1"}'))
    assert.equal(1, sample(text, 'chorus_rate_limit_wait_seconds_bucket{agent="llm",le="2.5"}'))
    assert.equal(0, engine.bus.errors)
  end)

  it("shows the Lua heap and what the memory store archived", function()
    local memory = require "chorus.store.memory"
    local engine = h.engine({ store = memory.new({ max_finished = 10, recent = 1 }) })
    local reg = require("chorus.metrics.engine").register(metrics.new(), engine)
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    for _ = 1, 4 do engine:execute(cfg, {}):wait() end
    local text = reg:render()
    assert.matches("chorus_store_archived_executions 3\n", text, 1, true)
    local bytes = tonumber(text:match("chorus_store_archive_bytes (%d+)"))
    assert.is_true(bytes > 3 * 200, tostring(bytes)) -- three records of a few hundred bytes
    local heap = tonumber(text:match("chorus_lua_heap_bytes (%d+)"))
    assert.is_true(heap > 100000, tostring(heap))
    assert.equal(4, sample(text, 'chorus_execution_duration_seconds_count{config="spec",status="completed"}'))
  end)

  it("labels HTTP requests by route template, status class and a bounded method", function()
    local hm_mod = require "chorus.metrics.http"
    local reg = metrics.new()
    local hm = hm_mod.new(reg)
    local t0 = require("chorus.native").now()
    hm:request({ method = "GET", path = "/api/v1/orchestrations/status/rawid1", route = "/api/v1/orchestrations/status/{trace_id}" }, 200, t0)
    hm:request({ method = "GET", path = "/api/v1/orchestrations/status/def", route = "/api/v1/orchestrations/status/{trace_id}" }, 404, t0)
    hm:request({ method = "GET", path = "/nothing/x1" }, 404, t0)
    hm:request({ method = "BREW", path = "/nothing/x2" }, 405, t0)
    hm:request({ method = "POST", path = "/p", route = "/p" }, 503, t0)
    hm:websocket({ method = "GET", path = "/ws/executions/rawtrace", route = "/ws/executions/{trace_id}" }, nil, t0)
    hm:websocket({ method = "GET", path = "/ws/execute/cfg", route = "/ws/execute/{config}" }, 401, t0)
    hm:websocket({ method = "GET", path = "/ws/what/ever" }, 404, t0)
    local text = reg:render()
    local R = 'chorus_http_requests_total{method="GET",route="/api/v1/orchestrations/status/{trace_id}",status_class="%s"}'
    assert.equal(1, sample(text, R:format("2xx")))
    assert.equal(1, sample(text, R:format("4xx")))
    assert.equal(2, sample(text, 'chorus_http_requests_total{method="GET",route="unmatched",status_class="4xx"}'))
    assert.equal(1, sample(text, 'chorus_http_requests_total{method="other",route="unmatched",status_class="4xx"}'))
    assert.equal(1, sample(text, 'chorus_http_requests_total{method="POST",route="/p",status_class="5xx"}'))
    assert.equal(1, sample(text, 'chorus_http_requests_total{method="GET",route="/ws/executions/{trace_id}",status_class="1xx"}'))
    assert.equal(1, sample(text, 'chorus_http_requests_total{method="GET",route="/ws/execute/{config}",status_class="4xx"}'))
    -- no raw path anywhere
    assert.is_nil(text:find("rawid", 1, true))
    assert.is_nil(text:find("x1", 1, true))
    assert.is_nil(text:find("rawtrace", 1, true))
    -- an upgraded WebSocket has no duration; everything else has one
    assert.is_nil(sample(text,
      'chorus_http_request_duration_seconds_count{method="GET",route="/ws/executions/{trace_id}",status_class="1xx"}'))
    assert.equal(1, sample(text,
      'chorus_http_request_duration_seconds_count{method="GET",route="/ws/execute/{config}",status_class="4xx"}'))
    assert.equal(2, sample(text,
      'chorus_http_request_duration_seconds_count{method="GET",route="unmatched",status_class="4xx"}'))
  end)

  it("exports the standard process series from /proc", function()
    local reg = require("chorus.metrics.process").register(metrics.new())
    local text = reg:render()
    assert.is_true(sample(text, "process_cpu_seconds_total") > 0)
    assert.is_true(sample(text, "process_resident_memory_bytes") > 1e6)
    assert.is_true(sample(text, "process_virtual_memory_bytes") >= sample(text, "process_resident_memory_bytes"))
    local started = sample(text, "process_start_time_seconds")
    local t = require("chorus.native").time()
    assert.is_true(started <= t + 1 and started > t - 3600, tostring(started))
    assert.is_true(sample(text, "process_open_fds") >= 3)
    assert.is_true(sample(text, "process_max_fds") >= sample(text, "process_open_fds"))
  end)
end)
