-- /metrics of a real `chorus serve` (in memory, then with PostgreSQL and
-- Redis) after executions that completed, failed and were cancelled, with
-- webhooks delivered, retried and refused: promtool accepts the text
-- without a word, the series a dashboard needs are there with their types
-- and labels, histogram counts match what was done, no raw path or id is
-- a label, and every metric deploy/grafana/chorus.json queries exists.
-- #postgres #redis
local h = require "spec.helpers"
local c = require "spec.support.clients"
local client = require "chorus.http.client"
local http = require "chorus.http.server"
local json = require "chorus.json"

local function serve(args, env)
  local log = os.tmpname()
  local pid = h.spawn(("env %s %s serve --listen 127.0.0.1:0 --no-auth --scripts %s/scripts %s"):format(
    env or "", h.binary, h.fixtures, args or ""), log)
  local port
  assert(h.wait_until(function()
    port = tonumber((c.slurp(log) or ""):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. (c.slurp(log) or ""))
  return { port = port, pid = pid, log = log, base = "http://127.0.0.1:" .. port }
end

local function stop(s)
  h.kill(s.pid)
  assert.is_true(h.wait_exit(s.pid, 20000), "serve did not exit")
end

local function req(s, method, path, body)
  local res = assert(client.request({ method = method, url = s.base .. path,
    headers = { ["content-type"] = "application/json" }, body = body and json.encode(body), timeout_ms = 10000 }))
  local ok, decoded = pcall(json.decode, res.body)
  return res.status, ok and decoded or nil, res
end

-- parse(text) -> families: name -> {type, help, samples = {{name, labels, value}}}
-- (a histogram's _bucket, _sum and _count samples under its own name).
local function parse_labels(s)
  local labels, i = {}, 2
  while i < #s do
    local name, rest = s:match("^([%a_][%w_]*)=\"()", i)
    assert(name, "bad labels: " .. s)
    local v, j = {}, rest
    while true do
      local ch = s:sub(j, j)
      if ch == "\\" then
        local nx = s:sub(j + 1, j + 1)
        v[#v + 1] = nx == "n" and "\n" or nx
        j = j + 2
      elseif ch == '"' then break
      else v[#v + 1] = ch; j = j + 1 end
      assert(j <= #s, "unterminated label value: " .. s)
    end
    labels[name] = table.concat(v)
    i = j + 1
    if s:sub(i, i) == "," then i = i + 1 end
  end
  return labels
end

local function parse(text)
  local fams = {}
  local function fam(name)
    fams[name] = fams[name] or { samples = {} }
    return fams[name]
  end
  for line in text:gmatch("[^\n]+") do
    local name, help = line:match("^# HELP (%S+) (.*)$")
    local tname, typ = line:match("^# TYPE (%S+) (%S+)$")
    if name then fam(name).help = help
    elseif tname then fam(tname).type = typ
    else
      local sname, lbl, value = line:match("^([%a_:][%w_:]*)(%b{}) (%S+)$")
      if not sname then sname, value = line:match("^([%a_:][%w_:]*) (%S+)$") end
      assert(sname, "unparsable line: " .. line)
      local base = sname:match("^(.*)_bucket$") or sname:match("^(.*)_sum$") or sname:match("^(.*)_count$")
      local owner = base and fams[base] and fams[base].type == "histogram" and base or sname
      local f = fams[owner]
      assert(f and f.type, "sample before its TYPE: " .. line)
      f.samples[#f.samples + 1] = { name = sname, labels = lbl and parse_labels(lbl) or {}, value = tonumber(value) }
    end
  end
  return fams
end

-- value(fams, sample_name, labels) -> the sum of the samples of that name
-- whose labels include those given (nil when none).
local function value(fams, name, want)
  local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$")
  local f = fams[name] or (base and fams[base])
  if not f then return nil end
  local sum
  for _, s in ipairs(f.samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(want or {}) do if s.labels[k] ~= v then ok = false break end end
      if ok then sum = (sum or 0) + s.value end
    end
  end
  return sum
end

-- The series a dashboard needs: type and label names (besides le).
local NEEDED = {
  chorus_build_info = { "gauge", { "version", "luajit" } },
  chorus_execution_transitions_total = { "counter", { "status" } },
  chorus_execution_duration_seconds = { "histogram", { "config", "status" } },
  chorus_step_transitions_total = { "counter", { "agent", "status" } },
  chorus_step_duration_seconds = { "histogram", { "agent", "status" } },
  chorus_step_retries_total = { "counter", { "agent" } },
  chorus_step_tokens_total = { "counter", { "agent", "config" } },
  chorus_step_cost_total = { "counter", { "agent", "config" } },
  chorus_step_cache_requests_total = { "counter", { "agent", "result" } },
  chorus_rate_limit_wait_seconds = { "histogram", { "agent" } },
  chorus_http_requests_total = { "counter", { "method", "route", "status_class" } },
  chorus_http_request_duration_seconds = { "histogram", { "method", "route", "status_class" } },
  chorus_webhook_deliveries_total = { "counter", { "outcome" } },
  chorus_executions_in_flight = { "gauge", {} },
  chorus_executions_in_flight_limit = { "gauge", {} },
  chorus_lua_heap_bytes = { "gauge", {} },
  process_resident_memory_bytes = { "gauge", {} },
  process_cpu_seconds_total = { "counter", {} },
  chorus_tasks_live = { "gauge", {} },
  chorus_registry_generation = { "gauge", {} },
  chorus_registry_load_errors = { "gauge", {} },
  chorus_http_connections = { "gauge", {} },
  chorus_websockets = { "gauge", {} },
  chorus_event_subscriber_errors_total = { "counter", {} },
}
local NEEDED_PG = {
  chorus_executions_pending = { "gauge", {} },
  chorus_executions_pending_limit = { "gauge", {} },
  chorus_store_commits_total = { "counter", {} },
  chorus_store_records_total = { "counter", {} },
  chorus_events_published_total = { "counter", {} },
  chorus_events_lost_total = { "counter", {} },
  chorus_redis_connected = { "gauge", {} },
  chorus_db_pool_open_connections = { "gauge", {} },
}

local function check_needed(fams, needed)
  for name, want in pairs(needed) do
    local f = fams[name]
    assert(f and f.type, "missing metric " .. name)
    assert.equal(want[1], f.type, name)
    assert.is_string(f.help, name)
    for _, s in ipairs(f.samples) do
      local names = {}
      for k in pairs(s.labels) do if k ~= "le" then names[#names + 1] = k end end
      table.sort(names)
      local expected = { unpack(want[2]) }
      table.sort(expected)
      assert.same(expected, names, s.name)
    end
  end
end

-- promtool(text) -> its exit code and everything it printed
local function promtool(text)
  assert(c.run("command -v promtool") == 0,
    "promtool is required: Debian's prometheus package (scripts/deps.sh --services installs it)")
  local file = os.tmpname()
  c.write(file, text)
  local rc, out, err = c.run("promtool check metrics < " .. c.q(file))
  os.remove(file)
  return rc, (out or "") .. (err or "")
end

local BASE = "/api/v1/orchestrations"

local CONFIGS = {
  { name = "m_ok", strategy = "sequential", steps = {
    { id = "a", agent = "echo", params = { output = { ok = 1 } } },
    { id = "m", agent = "metered", params = { tokens = 12, cost = 0.5 }, dependencies = { "a" } } } },
  { name = "m_fail", strategy = "sequential", steps = { { id = "f", agent = "fail" } } },
  { name = "m_slow", strategy = "sequential", steps = { { id = "d", agent = "delay", params = { ms = 30000 } } } },
}

-- drive(s, hook): 3 completed (one with a webhook that answers 500 first,
-- one with a webhook that answers 204), 1 failed, 1 cancelled; refused
-- (a config whose callback_url is an address not allowed) when given.
-- Returns the trace ids.
local function drive(s, hook, refused_hook)
  for _, cfg in ipairs(CONFIGS) do
    assert.equal(201, (req(s, "POST", BASE .. "/configs", cfg)))
  end
  local traces = {}
  local function execute(config, body)
    local st, r = req(s, "POST", BASE .. "/execute/" .. config, body)
    assert.equal(202, st)
    traces[#traces + 1] = r.trace_id
    return r.trace_id
  end
  execute("m_ok", { input = { n = 1 }, callback_url = hook("flaky") })
  execute("m_ok", { input = { n = 2 }, callback_url = hook("ok") })
  execute("m_ok", { input = { n = 3 } })
  execute("m_fail")
  local slow = execute("m_slow")
  assert.is_true(h.wait_until(function()
    local _, rec = req(s, "GET", BASE .. "/status/" .. slow)
    return rec and rec.status == "running"
  end, 10000))
  assert.equal(200, (req(s, "POST", BASE .. "/executions/" .. slow .. "/cancel")))
  -- the step cache: a miss, then a hit (params unique to this run: with
  -- Redis the cache outlives the server)
  local tag = require("chorus.native").random_hex(8)
  assert.equal(201, (req(s, "POST", BASE .. "/configs", { name = "m_cached", strategy = "sequential",
    steps = { { id = "c", agent = "echo", params = { output = { tag = tag } }, cache = { ttl_s = 60 } } } })))
  for _ = 1, 2 do
    local t = execute("m_cached")
    assert.is_true(h.wait_until(function()
      local _, rec = req(s, "GET", BASE .. "/status/" .. t)
      return rec and rec.status == "completed"
    end, 10000))
  end
  -- a rate limit of 10 a second with a burst of 1: of three steps at once,
  -- two wait
  assert.equal(201, (req(s, "POST", BASE .. "/configs", { name = "m_limited", strategy = "parallel",
    settings = { rate_limits = { echo = { per_second = 10, burst = 1 } } },
    steps = { { id = "a", agent = "echo" }, { id = "b", agent = "echo" }, { id = "c", agent = "echo" } } })))
  execute("m_limited")
  if refused_hook then
    local cfg = { name = "m_refused", strategy = "sequential", steps = { { id = "a", agent = "echo" } },
      settings = { callback_url = refused_hook } }
    assert.equal(201, (req(s, "POST", BASE .. "/configs", cfg)))
    execute("m_refused")
  end
  for _, t in ipairs(traces) do
    assert.is_true(h.wait_until(function()
      local _, rec = req(s, "GET", BASE .. "/status/" .. t)
      return rec and (rec.status == "completed" or rec.status == "failed" or rec.status == "cancelled")
    end, 15000), "execution did not end: " .. t)
  end
  -- unmatched paths and a bad method: fixed labels, never the raw path
  assert.equal(404, (req(s, "GET", "/no/such/raw-path-xyz")))
  assert.equal(405, (req(s, "DELETE", BASE .. "/executions")))
  return traces, slow
end

local function scrape(s)
  local st, _, res = req(s, "GET", "/metrics")
  assert.equal(200, st)
  assert.matches("^text/plain; version=0%.0%.4", res.headers["content-type"])
  return res.body
end

-- checks common to both modes, on a scrape after drive()
local function check_counts(fams, traces, slow)
  local function v(name, labels) return value(fams, name, labels) end
  assert.equal(3, v("chorus_execution_duration_seconds_count", { config = "m_ok", status = "completed" }))
  assert.equal(1, v("chorus_execution_duration_seconds_count", { config = "m_fail", status = "failed" }))
  assert.equal(1, v("chorus_execution_duration_seconds_count", { config = "m_slow", status = "cancelled" }))
  -- buckets are cumulative and end at the count
  assert.equal(3, v("chorus_execution_duration_seconds_bucket", { config = "m_ok", status = "completed", le = "+Inf" }))
  assert.equal(3, v("chorus_step_duration_seconds_count", { agent = "metered", status = "completed" }))
  assert.equal(1, v("chorus_step_duration_seconds_count", { agent = "fail", status = "failed" }))
  assert.is_nil(v("chorus_step_duration_seconds_count", { agent = "delay" })) -- cancelled: no duration
  assert.equal(1, v("chorus_step_transitions_total", { agent = "delay", status = "cancelled" }))
  assert.equal(36, v("chorus_step_tokens_total", { agent = "metered", config = "m_ok" }))
  assert.equal(1.5, v("chorus_step_cost_total", { agent = "metered", config = "m_ok" }))
  assert.equal(1, v("chorus_build_info"))
  assert.equal(1, v("chorus_step_cache_requests_total", { agent = "echo", result = "miss" }))
  assert.equal(1, v("chorus_step_cache_requests_total", { agent = "echo", result = "hit" }))
  assert.equal(2, v("chorus_rate_limit_wait_seconds_count", { agent = "echo" }))
  local waited = v("chorus_rate_limit_wait_seconds_sum", { agent = "echo" })
  assert.is_true(waited > 0.1 and waited < 5, tostring(waited)) -- about 0.1 + 0.2 s
  -- every POST execute was one request of the template, answered 202
  local execute_route = BASE .. "/execute/{config}"
  assert.equal(#traces, v("chorus_http_requests_total", { method = "POST", route = execute_route, status_class = "2xx" }))
  assert.equal(#traces, v("chorus_http_request_duration_seconds_count",
    { method = "POST", route = execute_route, status_class = "2xx" }))
  assert.equal(1, v("chorus_http_requests_total",
    { method = "POST", route = BASE .. "/executions/{trace_id}/cancel", status_class = "2xx" }))
  assert.is_true(v("chorus_http_requests_total", { route = "unmatched", status_class = "4xx" }) >= 2)
  assert.equal(0, v("chorus_http_handler_errors_total"))
  assert.equal(0, v("chorus_event_subscriber_errors_total"))
  assert.equal(0, v("chorus_executions_in_flight"))
  -- nothing unbounded in any label
  for name, f in pairs(fams) do
    for _, s in ipairs(f.samples) do
      for k, lv in pairs(s.labels) do
        assert.is_nil(lv:find("raw-path-xyz", 1, true), name .. " " .. k)
        for _, t in ipairs(traces) do assert.is_nil(lv:find(t, 1, true), name .. " has a trace id") end
        assert.is_nil(lv:find(slow, 1, true))
      end
    end
  end
end

-- The metric names a dashboard's queries use (histogram suffixes cut).
local function dashboard_metrics()
  local doc = json.decode(assert(c.slurp(h.root .. "/deploy/grafana/chorus.json"), "no dashboard"))
  local names, n = {}, 0
  local function walk(v)
    if type(v) == "table" then
      for k, x in pairs(v) do
        if (k == "expr" or k == "query" or k == "definition") and type(x) == "string" then
          for name in x:gmatch("[%a_]+") do
            if name:match("^chorus_") or name:match("^process_") then
              name = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
              if not names[name] then n = n + 1 end
              names[name] = true
            end
          end
        else
          walk(x)
        end
      end
    end
  end
  walk(doc)
  return names, n, doc
end

describe("/metrics", function()
  local hooks, hook_srv = {}, nil
  local has_node
  local scrapes = {} -- every family seen, for the dashboard check
  setup(function()
    has_node = c.setup()
    hook_srv = assert(http.listen({ port = 0 }, function(r)
      hooks[r.path] = (hooks[r.path] or 0) + 1
      if r.path == "/flaky" and hooks[r.path] == 1 then return 500 end
      return 204
    end))
  end)
  teardown(function()
    hook_srv:close({ grace_ms = 100 })
    c.cleanup()
  end)
  local function hook(p) return ("http://127.0.0.1:%d/%s"):format(hook_srv.port, p) end

  local function remember(fams)
    for name, f in pairs(fams) do scrapes[name] = f end
  end

  it("in memory: promtool accepts the scrape; the series, types, labels and counts are right", function()
    hooks = {}
    local s = serve("", "CHORUS_WEBHOOK_ALLOW=127.0.0.1")
    local ok, err = pcall(function()
      -- before anything ran: valid too (series with no samples yet)
      local rc, out = promtool(scrape(s))
      assert.equal("", out)
      assert.equal(0, rc)

      local traces, slow = drive(s, hook, "http://127.0.0.2:9/refused")
      assert.is_true(h.wait_until(function() return hooks["/ok"] == 1 and hooks["/flaky"] == 2 end, 10000),
        "webhooks not delivered")
      if has_node then -- a WebSocket follower: counted under its template once it ends
        local res = c.node_result(c.node_ws(s, "/ws/executions/" .. traces[1], nil, 0))
        assert.equal("result", json.decode(res.got[#res.got]).type)
      end
      local fams
      assert.is_true(h.wait_until(function()
        fams = parse(scrape(s))
        return value(fams, "chorus_webhook_deliveries_total", { outcome = "delivered" }) == 2
          and value(fams, "chorus_webhook_deliveries_total", { outcome = "failed" }) == 1
          and (not has_node or value(fams, "chorus_http_requests_total", { route = "/ws/executions/{trace_id}" }) == 1)
      end, 10000), "webhook outcomes or the WebSocket session not counted")
      local text = scrape(s)
      rc, out = promtool(text)
      assert.equal("", out)
      assert.equal(0, rc)
      fams = parse(text)
      remember(fams)
      check_needed(fams, NEEDED)
      assert.is_nil(fams.chorus_executions_pending) -- memory has no queue
      check_counts(fams, traces, slow)
      assert.equal(1, value(fams, "chorus_webhook_deliveries_total", { outcome = "retried" }))
      assert.equal(10000, value(fams, "chorus_executions_in_flight_limit"))
      assert.is_true(value(fams, "chorus_store_archived_executions") >= 0)
      if has_node then
        assert.equal(1, value(fams, "chorus_http_requests_total",
          { method = "GET", route = "/ws/executions/{trace_id}", status_class = "1xx" }))
        assert.is_true(value(fams, "chorus_websockets_opened_total") >= 1)
      end
    end)
    stop(s)
    assert(ok, err)
  end)

  describe("with PostgreSQL and Redis", function()
    if not h.pg_url() or not os.getenv("CHORUS_TEST_REDIS") then
      pending("CHORUS_TEST_PG / CHORUS_TEST_REDIS not set")
      return
    end

    it("promtool accepts the scrape; the queue, store and event bridge series are there", function()
      hooks = {}
      local url = h.fresh_db("metrics")
      local s = serve(("--db %s --redis %s"):format(url, os.getenv("CHORUS_TEST_REDIS")),
        "CHORUS_WEBHOOK_ALLOW=127.0.0.1")
      local ok, err = pcall(function()
        local traces, slow = drive(s, hook)
        assert.is_true(h.wait_until(function() return hooks["/ok"] == 1 and hooks["/flaky"] == 2 end, 15000),
          "webhooks not delivered")
        local fams
        assert.is_true(h.wait_until(function()
          fams = parse(scrape(s))
          return value(fams, "chorus_webhook_deliveries_total", { outcome = "delivered" }) == 2
        end, 10000))
        local text = scrape(s)
        local rc, out = promtool(text)
        assert.equal("", out)
        assert.equal(0, rc)
        fams = parse(text)
        remember(fams)
        check_needed(fams, NEEDED)
        check_needed(fams, NEEDED_PG)
        check_counts(fams, traces, slow)
        assert.equal(1, value(fams, "chorus_webhook_deliveries_total", { outcome = "retried" }))
        assert.equal(0, value(fams, "chorus_executions_pending"))
        assert.equal(100000, value(fams, "chorus_executions_pending_limit"))
        assert.equal(1000, value(fams, "chorus_executions_in_flight_limit"))
        assert.is_true(value(fams, "chorus_store_commits_total") > 0)
        assert.is_true(value(fams, "chorus_events_published_total") > 0)
        assert.equal(1, value(fams, "chorus_redis_connected"))
        -- the counters only grow
        local again = parse(scrape(s))
        for name, f in pairs(fams) do
          if f.type == "counter" then
            for _, smp in ipairs(f.samples) do
              local now_v = value(again, smp.name, smp.labels)
              assert.is_true(now_v >= smp.value, name)
            end
          end
        end

        -- The queue is counted in PostgreSQL under a deadline: with the
        -- table locked the scrape still answers, at once, without it.
        local pg = require "chorus.db.pg"
        local sched = require "chorus.sched"
        local locker = assert(pg.connect(url))
        assert(locker:query("BEGIN"))
        assert(locker:query("LOCK TABLE orchestration_executions IN ACCESS EXCLUSIVE MODE"))
        sched.sleep(1100) -- past the count's cache
        local t0 = sched.now()
        text = scrape(s)
        local took = sched.now() - t0
        assert(locker:query("ROLLBACK"))
        locker:close()
        assert.is_true(took < 3000, "scrape took " .. took .. " ms")
        fams = parse(text)
        assert.equal("gauge", fams.chorus_executions_pending.type)
        assert.is_nil(value(fams, "chorus_executions_pending"))
        rc, out = promtool(text)
        assert.equal("", out)
        assert.equal(0, rc)
        sched.sleep(1100)
        assert.equal(0, value(parse(scrape(s)), "chorus_executions_pending"))
      end)
      stop(s)
      assert(ok, err)
    end)

    it("every metric the Grafana dashboard queries exists in a real scrape", function()
      assert(next(scrapes), "no scrape to compare with (the specs above failed)")
      local names, n, doc = dashboard_metrics()
      assert.is_true(n >= 15, "the dashboard uses only " .. n .. " metrics")
      for name in pairs(names) do
        assert(scrapes[name] and scrapes[name].type, "the dashboard queries " .. name .. ", which /metrics does not have")
      end
      -- every query is valid PromQL: promtool parses them as recording
      -- rules (Grafana's variables replaced by what they stand for)
      local rules, exprs = {}, {}
      local function collect(v)
        if type(v) ~= "table" then return end
        for k, x in pairs(v) do
          if k == "expr" and type(x) == "string" then exprs[#exprs + 1] = x else collect(x) end
        end
      end
      collect(doc.panels)
      for i, e in ipairs(exprs) do
        e = e:gsub("%$__rate_interval", "5m"):gsub("%$__range", "1h"):gsub("%$job", ".*"):gsub("%$instance", ".*")
        assert.is_nil(e:find("$", 1, true), "a variable left in " .. e)
        assert.is_nil(e:find("\\", 1, true), e)
        rules[i] = { record = "dashboard:query_" .. i, expr = e }
      end
      local file = os.tmpname()
      -- JSON is YAML, but for the "\/" our encoder writes (no query has a backslash)
      c.write(file, (json.encode({ groups = { { name = "dashboard", rules = rules } } }):gsub("\\/", "/")))
      local rc, out, err = c.run("promtool check rules " .. c.q(file))
      os.remove(file)
      assert.equal(0, rc, (out or "") .. (err or ""))
      assert.matches("SUCCESS: " .. #exprs .. " rules found", out, 1, true)
      -- panels: unique ids, each with a query
      local ids = {}
      for _, p in ipairs(doc.panels) do
        assert.is_nil(ids[p.id], "duplicate panel id " .. tostring(p.id))
        ids[p.id] = true
        if p.type ~= "row" then assert.is_true(#(p.targets or {}) > 0, "panel without a query: " .. tostring(p.title)) end
      end
    end)
  end)
end)
