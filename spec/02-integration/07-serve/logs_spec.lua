-- Logs as an operator reads them, from real `chorus serve` processes:
--   - two nodes on PostgreSQL and Redis, one killed mid-execution: the
--     execution is followed by its trace id through both nodes' JSON logs
--     (start and access lines on one, resumption, end and access lines on
--     the other), with jq as docs/DESIGN.md says;
--   - no record of any of those runs holds a secret: API keys, the admin
--     key, the database password, the webhook secret and credentials, or
--     a secret-looking environment variable;
--   - a stderr nobody reads (a FIFO whose reader never reads) never
--     stalls the server: /healthz stays fast, lines are dropped and
--     counted (chorus_log_lines_dropped_total), and it still stops;
--   - a normal exit writes every last line.
-- #postgres #redis
local h = require "spec.helpers"
local c = require "spec.support.clients"
local client = require "chorus.http.client"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

-- Secrets put in play; each must never appear in a log line.
local ADMIN_KEY = "chk_" .. ("ad"):rep(32)
local DB_PASSWORD = "db-Pa55-" .. native.random_hex(8)
local CALLBACK_SECRET = "whsec-" .. native.random_hex(12)
local HOOK_PASSWORD = "hook-pw-" .. native.random_hex(8)
local OPENAI_KEY = "sk-logs-" .. native.random_hex(16)
local TWS_PASSWORD = "tws-" .. native.random_hex(10)
local SECRET_ENV = table.concat({ "CHORUS_ADMIN_KEY=" .. ADMIN_KEY, "CHORUS_CALLBACK_SECRET=" .. CALLBACK_SECRET,
  "OPENAI_API_KEY=" .. OPENAI_KEY, "TWS_PASSWORD=" .. TWS_PASSWORD }, " ")

-- serve(args, env) -> {pid, log, base, port, node}: a `chorus serve`
-- whose stderr is a file (so its records are JSON unless told).
local function serve(args, env)
  local log = os.tmpname()
  local pid = h.spawn(("env %s %s serve --listen 127.0.0.1:0 %s"):format(env or "", h.binary, args or ""), log)
  local port
  assert(h.wait_until(function()
    port = tonumber((c.slurp(log) or ""):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 15000), "serve did not start")
  assert(port, "serve failed: " .. (c.slurp(log) or ""))
  local s = { pid = pid, log = log, port = port, base = "http://127.0.0.1:" .. port }
  local res = assert(client.request({ url = s.base .. "/healthz", timeout_ms = 10000 }))
  s.node = json.decode(res.body).node
  return s
end

-- req(s, method, path, body, key) -> status, decoded body
local function req(s, method, path, body, key)
  local hd = { ["content-type"] = "application/json" }
  if key then hd.authorization = "Bearer " .. key end
  local res = assert(client.request({ method = method, url = s.base .. path, headers = hd,
    body = type(body) == "table" and json.encode(body) or body, timeout_ms = 10000 }))
  local ok, decoded = pcall(json.decode, res.body)
  return res.status, ok and decoded or nil
end

local TS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
local LEVELS = { debug = true, info = true, warn = true, error = true }

-- records(path) -> every line of the log decoded; each must be a JSON
-- record with ts, level and msg
local function records(path)
  local out = {}
  for i, line in ipairs(h.read_lines(path)) do
    local r = json.decode(line)
    assert(type(r) == "table", ("%s:%d is not a JSON record: %s"):format(path, i, line))
    assert(type(r.ts) == "string" and r.ts:match(TS), "ts: " .. line)
    assert(LEVELS[r.level], "level: " .. line)
    assert(type(r.msg) == "string", "msg: " .. line)
    out[#out + 1] = r
  end
  return out
end

local function with_trace(recs, trace)
  local out = {}
  for _, r in ipairs(recs) do
    if r.trace_id == trace then out[#out + 1] = r end
  end
  return out
end

local function find(recs, pred)
  for _, r in ipairs(recs) do
    if pred(r) then return r end
  end
end

local function stop(s)
  if s and h.alive(s.pid) then
    h.kill(s.pid, "TERM")
    assert.is_true(h.wait_exit(s.pid, 20000), "serve did not exit")
  end
end

-- leaks(text, secrets) -> the secrets found in text (and their halves:
-- a key cut in the middle still leaks)
local function leaks(text, secrets)
  local found = {}
  for name, s in pairs(secrets) do
    if text:find(s, 1, true) then found[#found + 1] = name end
    local tail = s:sub(math.floor(#s / 2) + 1)
    if #tail >= 8 and text:find(tail, 1, true) then found[#found + 1] = name .. " (its second half)" end
  end
  table.sort(found)
  return found
end

describe("logs", function()
  setup(function() c.setup() end)
  teardown(function() c.cleanup() end)

  describe("with PostgreSQL and Redis", function()
    if not h.pg_url() or not os.getenv("CHORUS_TEST_REDIS") then
      pending("CHORUS_TEST_PG / CHORUS_TEST_REDIS not set")
      return
    end
    local redis = os.getenv("CHORUS_TEST_REDIS")
    local url, a, b, m, keys = nil, nil, nil, nil, {}

    local function key(tenant, user, role)
      local code, out, err = h.sh(("%s keys create --db '%s' --tenant %s --user %s --role %s"):format(
        h.binary, url, tenant, user, role))
      assert.equal(0, code, err)
      return assert(out:match("(chk_%x+)%s*$"), out)
    end

    setup(function()
      -- The test server trusts every local connection, so any password
      -- works: the URL carries one, as a production one would.
      url = h.fresh_db("logs"):gsub("^(postgresql://[^:@/]+)@", "%1:" .. DB_PASSWORD .. "@")
      assert(url:find(DB_PASSWORD, 1, true), url)
      keys.admin = key("t1", "root", "admin")
      keys.op = key("t1", "olga", "operator")
      -- A at the defaults (info, JSON because stderr is a file), with
      -- --db; B at debug, the database from DATABASE_URL.
      a = serve(("--db '%s' --redis %s --lease-ms 1500 --grace-ms 0"):format(url, redis), SECRET_ENV)
      b = serve(("--redis %s --lease-ms 1500 --log-level debug"):format(redis),
        SECRET_ENV .. " DATABASE_URL='" .. url .. "'")
    end)
    teardown(function()
      if a and h.alive(a.pid) then h.kill(a.pid, "KILL") end
      stop(b)
      stop(m)
    end)

    it("follows one execution through both nodes' logs by its trace id", function()
      local follow = { name = "follow", strategy = "sequential", steps = {
        { id = "a", agent = "delay", params = { ms = 200 } },
        { id = "b", agent = "delay", params = { ms = 2500 }, dependencies = { "a" } },
        { id = "c", agent = "echo", params = { output = "done" }, dependencies = { "b" } } } }
      assert.equal(201, (req(a, "POST", "/api/v1/orchestrations/configs", follow, keys.op)))
      local st, r = req(a, "POST", "/api/v1/orchestrations/execute/follow", { input = { job = "PAYROLL" } }, keys.op)
      assert.equal(202, st)
      local trace = r.trace_id
      -- Step a done and b in flight on node A: then A dies.
      assert.is_true(h.wait_until(function()
        local _, rec = req(a, "GET", "/api/v1/orchestrations/status/" .. trace, nil, keys.op)
        return rec.steps[1].status == "completed"
      end, 10000))
      assert.equal(200, (req(b, "GET", "/api/v1/orchestrations/status/" .. trace, nil, keys.op)))
      h.kill(a.pid, "KILL")
      assert.is_true(h.wait_exit(a.pid, 10000))
      -- Node B takes it over once A's lease expires, and completes it.
      local rec
      assert.is_true(h.wait_until(function()
        st, rec = req(b, "GET", "/api/v1/orchestrations/status/" .. trace, nil, keys.op)
        return st == 200 and rec.status == "completed"
      end, 20000), "not completed on node B")
      assert.equal(2, rec.claims)
      assert.equal("done", rec.output)
      assert.is_true(h.wait_until(function()
        return find(with_trace(records(b.log), trace), function(x) return x.msg == "execution completed" end) ~= nil
      end, 5000))
      -- A WebSocket follower on B: its access line comes when it ends.
      local ws = c.node_result(c.node_ws(b, "/ws/executions/" .. trace .. "?api_key=" .. keys.op, nil, 0))
      assert.equal("result", json.decode(ws.got[#ws.got]).type)
      assert.is_true(h.wait_until(function()
        return find(with_trace(records(b.log), trace), function(x) return x.status == 101 end) ~= nil
      end, 5000))

      local la, lb = with_trace(records(a.log), trace), with_trace(records(b.log), trace)
      -- Node A: the submit's access line, the start.
      local post = find(la, function(x) return x.msg == "http request" and x.method == "POST" end)
      assert.is_table(post, "no access line for the execute on A")
      assert.same({ "/api/v1/orchestrations/execute/{config}", 202, keys.op:sub(1, 12), a.node },
        { post.route, post.status, post.key_id, post.node })
      assert.is_number(post.duration_ms)
      assert.equal("127.0.0.1", post.remote)
      local started = find(la, function(x) return x.msg == "execution started" end)
      assert.is_table(started, "no start on A")
      assert.same({ r.execution_id, "follow", a.node }, { started.execution_id, started.config, started.node })
      assert.is_nil(find(la, function(x) return x.msg == "execution completed" end))
      -- Node B: its access line, the resumption, the steps (debug), the end.
      local get = find(lb, function(x) return x.msg == "http request" end)
      assert.same({ "GET", "/api/v1/orchestrations/status/{trace_id}", 200, b.node },
        { get.method, get.route, get.status, get.node })
      local resumed = find(lb, function(x) return x.msg:find("resuming execution", 1, true) end)
      assert.is_table(resumed, "no resumption on B")
      assert.same({ r.execution_id, "follow", 2 }, { resumed.execution_id, resumed.config, resumed.claim })
      local upgraded = find(lb, function(x) return x.msg == "http request" and x.status == 101 end)
      assert.same({ "GET", "/ws/executions/{trace_id}", keys.op:sub(1, 12) },
        { upgraded.method, upgraded.route, upgraded.key_id })
      local step_c = find(lb, function(x) return x.step_id == "c" and x.status == "completed" end)
      assert.same({ "echo", 1 }, { step_c.agent, step_c.attempt })
      local done = find(lb, function(x) return x.msg == "execution completed" end)
      assert.same({ r.execution_id, "follow", "completed", b.node },
        { done.execution_id, done.config, done.status, done.node })
      assert.is_number(done.latency_ms)
      for _, x in ipairs(la) do assert.equal(r.execution_id, x.execution_id or r.execution_id) end
      for _, x in ipairs(lb) do assert.equal(r.execution_id, x.execution_id or r.execution_id) end

      -- The operator's way (docs/DESIGN.md): jq over both logs.
      local out = os.tmpname()
      assert.equal(0, c.run(("jq -c 'select(.trace_id==\"%s\")' %s %s > %s"):format(trace, a.log, b.log, out), 20000))
      assert.equal(#la + #lb, #h.read_lines(out))
      os.remove(out)
    end)

    it("has no secret in any line, at debug too", function()
      -- A node in memory (webhooks are delivered and retried by the node
      -- itself, and logged with their URL) at debug.
      m = serve("--log-level debug", SECRET_ENV .. " CHORUS_WEBHOOK_ALLOW=127.0.0.1")
      local hook = "http://hook:" .. HOOK_PASSWORD .. "@127.0.0.1:9/cb" -- nothing listens on port 9
      local cfg = { name = "leak", strategy = "sequential", steps = {
        { id = "a", agent = "echo" }, { id = "b", agent = "fail", on_failure = "continue" } } }
      assert.equal(201, (req(m, "POST", "/api/v1/orchestrations/configs", cfg, ADMIN_KEY)))
      local st, r = req(m, "POST", "/api/v1/orchestrations/execute/leak", { input = { x = 1 }, callback_url = hook },
        ADMIN_KEY)
      assert.equal(202, st)
      -- Keys where they do not belong: unknown, and in the query string.
      assert.equal(401, (req(m, "GET", "/api/v1/orchestrations/configs", nil, "chk_" .. ("0e"):rep(32))))
      assert.equal(401, (req(b, "GET", "/api/v1/orchestrations/executions?api_key=" .. keys.admin, nil, nil)))
      assert.equal(200, (req(b, "GET", "/api/v1/orchestrations/executions", nil, keys.admin)))
      assert.equal(200, (req(m, "GET", "/api/v1/orchestrations/status/" .. r.trace_id, nil, ADMIN_KEY)))
      -- The webhook's failure is logged with its URL, the password out.
      assert.is_true(h.wait_until(function()
        return (c.slurp(m.log) or ""):find("hook:[redacted]@127.0.0.1:9/cb", 1, true) ~= nil
      end, 10000), c.slurp(m.log))
      stop(m)
      stop(b)

      local text = table.concat({ c.slurp(a.log) or "", c.slurp(b.log) or "", c.slurp(m.log) or "" }, "\n")
      -- The keys were in play: their public prefixes are in the access lines.
      for _, k in ipairs({ keys.admin, keys.op, ADMIN_KEY }) do
        assert.truthy(text:find('"key_id":"' .. k:sub(1, 12) .. '"', 1, true), k:sub(1, 12))
      end
      assert.same({}, leaks(text, { admin_key = ADMIN_KEY, api_key_admin = keys.admin, api_key_operator = keys.op,
        db_password = DB_PASSWORD, callback_secret = CALLBACK_SECRET, hook_password = HOOK_PASSWORD,
        openai_api_key = OPENAI_KEY, tws_password = TWS_PASSWORD }))
    end)
  end)

  describe("a stderr nobody reads", function()
    local dir, reader, s

    teardown(function()
      if s and h.alive(s.pid) then h.kill(s.pid, "KILL") end
      if reader then h.kill(reader, "KILL") end
      if dir then os.execute("rm -rf " .. c.q(dir)) end
    end)

    it("never stalls the server: lines are dropped and counted, /healthz stays fast", function()
      dir = h.tmpdir()
      local fifo = dir .. "/stderr"
      assert.equal(0, os.execute("mkfifo " .. c.q(fifo)))
      -- The reader opens the FIFO and never reads it.
      reader = h.spawn("sleep 1000 < " .. c.q(fifo))
      local reservation, port = native.reserve_port("127.0.0.1", 0)
      assert(reservation, port)
      reservation:close()
      local pidfile = dir .. "/pid"
      assert.equal(0, os.execute(("(exec env CHORUS_LOG_BUFFER_KB=64 %s serve --no-auth --listen 127.0.0.1:%d "
        .. "--log-level debug --log-format json) >/dev/null 2>%s </dev/null & echo $! > %s")
        :format(h.binary, port, c.q(fifo), c.q(pidfile))))
      s = { pid = tonumber(c.slurp(pidfile)), base = "http://127.0.0.1:" .. port }
      assert.is_true(h.wait_until(function()
        local res = client.request({ url = s.base .. "/healthz", timeout_ms = 1000 })
        return res and res.status == 200
      end, 15000), "serve did not start")
      local function dropped()
        local res = assert(client.request({ url = s.base .. "/metrics", timeout_ms = 5000 }))
        return tonumber(res.body:match("\nchorus_log_lines_dropped_total (%d+)"))
      end
      assert.equal(201, (req(s, "POST", "/api/v1/orchestrations/configs",
        { name = "noisy", strategy = "parallel", steps = { { id = "a", agent = "echo" }, { id = "b", agent = "echo" } } })))
      -- Far more than the pipe (64 KiB) and the buffer (64 KiB) hold:
      -- ~8 debug records per execution.
      local slowest = 0
      for i = 1, 600 do
        assert.equal(202, (req(s, "POST", "/api/v1/orchestrations/execute/noisy", { input = { i = i } })))
        if i % 50 == 0 then
          local t0 = sched.now()
          assert.equal(200, (req(s, "GET", "/healthz")))
          slowest = math.max(slowest, sched.now() - t0)
        end
      end
      local first = dropped()
      assert.is_true(first > 0, "no line dropped")
      assert.is_true(slowest < 1000, "/healthz took " .. slowest .. " ms")
      for _ = 1, 20 do req(s, "GET", "/healthz") end
      assert.is_true(dropped() > first, "the count did not grow")
      -- It still stops at once (at exit it gives the writer 2 s).
      local t0 = sched.now()
      h.kill(s.pid, "TERM")
      assert.is_true(h.wait_exit(s.pid, 15000), "serve did not exit")
      assert.is_true(sched.now() - t0 < 12000)
    end)
  end)

  it("refuses a bad level, format or buffer size at start (exit 2), saying where it came from", function()
    local code, _, err = h.sh(h.binary .. " serve --log-level loud --listen 127.0.0.1:0")
    assert.equal(2, code)
    assert.matches("chorus serve: %-%-log%-level must be one of debug, info, warn, error, off, got 'loud'", err)
    code, _, err = h.sh("CHORUS_LOG_FORMAT=xml " .. h.binary .. " worker --db postgresql://nobody@127.0.0.1:1/x")
    assert.equal(2, code)
    assert.matches("chorus worker: CHORUS_LOG_FORMAT must be json or text, got 'xml'", err)
    code, _, err = h.sh("CHORUS_LOG=chatty " .. h.binary .. " run " .. h.root .. "/examples/nothing.json")
    assert.equal(2, code)
    assert.matches("chorus run: CHORUS_LOG must be one of", err)
    code, _, err = h.sh("CHORUS_LOG_BUFFER_KB=1 " .. h.binary .. " serve --listen 127.0.0.1:0")
    assert.equal(2, code)
    assert.matches("CHORUS_LOG_BUFFER_KB must be a whole number of KiB from 16 to 1048576, got '1'", err)
    code = h.sh(h.binary .. " serve --help | grep -q -- '--log-format FORMAT'")
    assert.equal(0, code)
  end)

  it("writes every last line at a normal exit", function()
    local dir = h.tmpdir()
    finally(function() os.execute("rm -rf " .. c.q(dir)) end)
    h.write(dir .. "/many.lua", [[
      local log = require "chorus.log"
      for i = 1, 20000 do log.info_with({ "i", i }, "line %d of many", i) end
      log.warn("the last one")
    ]])
    local code = c.run(("CHORUS_LOG_FORMAT=json %s lua %s 2> %s"):format(h.binary, c.q(dir .. "/many.lua"),
      c.q(dir .. "/err")), 30000)
    assert.equal(0, code)
    local lines = h.read_lines(dir .. "/err")
    assert.equal(20001, #lines)
    assert.equal(20000, json.decode(lines[20000]).i)
    assert.equal("the last one", json.decode(lines[20001]).msg)
  end)
end)
