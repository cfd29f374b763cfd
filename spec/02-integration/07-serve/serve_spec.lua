-- `chorus serve` as a user runs it: real server processes over loopback,
-- with real HTTP (curl through chorus.http.client) and WebSocket (node)
-- clients; in memory, then with PostgreSQL and Redis and two nodes.
-- #postgres #redis
local h = require "spec.helpers"
local c = require "spec.support.clients"
local client = require "chorus.http.client"
local json = require "chorus.json"
local sched = require "chorus.sched"

-- serve(args, env, port) -> {port, pid, log, base}: a `chorus serve` on
-- port (default 0: a free one; several --workers need a fixed one).
local function serve(args, env, port_)
  local log = os.tmpname()
  local pid = h.spawn(("env %s %s serve --listen 127.0.0.1:%d %s"):format(env or "", h.binary, port_ or 0, args or ""), log)
  local port
  assert(h.wait_until(function()
    local f = io.open(log)
    local s = f and f:read("*a") or ""
    if f then f:close() end
    port = tonumber(s:match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. (c.slurp(log) or ""))
  return { port = port, pid = pid, log = log, base = "http://127.0.0.1:" .. port }
end

local function stop(s, sig)
  h.kill(s.pid, sig or "TERM")
  assert.is_true(h.wait_exit(s.pid, 20000), "serve did not exit")
end

-- req(s, method, path, body, key, headers) -> status, decoded body, response
local function req(s, method, path, body, key, headers)
  local hd = { ["content-type"] = "application/json" }
  if key then hd.authorization = "Bearer " .. key end
  for k, v in pairs(headers or {}) do hd[k] = v or nil end
  if type(body) == "table" then body = json.encode(body) end
  local res = assert(client.request({ method = method, url = s.base .. path, headers = hd, body = body,
    timeout_ms = 10000 }))
  local ok, decoded = pcall(json.decode, res.body)
  return res.status, ok and decoded or nil, res
end

local SLOW = { name = "slow", strategy = "sequential", steps = {
  { id = "a", agent = "delay", params = { ms = 150, output = { a = 1 } } },
  { id = "b", agent = "delay", params = { ms = 150, output = { b = 2 } }, dependencies = { "a" } } } }

local function types(msgs)
  local out = {}
  for i, m in ipairs(msgs) do
    local v = json.decode(m)
    out[i] = v and (v.type .. (v.status and (":" .. (v.step_id and (v.step_id .. ":") or "") .. v.status) or "")) or m
  end
  return out
end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

describe("chorus serve", function()
  local has_node
  setup(function() has_node = c.setup() end)
  teardown(function() c.cleanup() end)

  describe("in memory", function()
    local s
    local KEY = "chk_" .. ("ab"):rep(32)
    setup(function() s = serve("", "CHORUS_ADMIN_KEY=" .. KEY) end)
    teardown(function() if s then stop(s) end end)

    it("answers 202 at once while the execution runs, then the status", function()
      assert.equal(200, (req(s, "GET", "/healthz")))
      assert.equal(401, (req(s, "GET", "/api/v1/orchestrations/configs")))
      assert.equal(201, (req(s, "POST", "/api/v1/orchestrations/configs", SLOW, KEY)))
      local t0 = sched.now()
      local st, r = req(s, "POST", "/api/v1/orchestrations/execute/slow", { input = { x = 1 } }, KEY)
      assert.equal(202, st)
      assert.is_true(sched.now() - t0 < 150, "execute took " .. (sched.now() - t0))
      assert.is_true(h.wait_until(function()
        local _, rec = req(s, "GET", r.status_url, nil, KEY)
        return rec.status == "completed"
      end, 5000))
      local _, rec = req(s, "GET", r.status_url, nil, KEY)
      assert.same({ b = 2 }, rec.output)
      assert.equal(2, #rec.steps)
    end)

    it("answers every malformed request with the right 4xx, never a 5xx, and keeps answering", function()
      local cases = {
        { "POST", "/api/v1/orchestrations/configs", "{ nope", nil, 400 },
        { "POST", "/api/v1/orchestrations/configs", '{"name":"\255\254"}', nil, 400 },
        { "POST", "/api/v1/orchestrations/configs", ("["):rep(5000) .. ("]"):rep(5000), nil, 400 },
        { "POST", "/api/v1/orchestrations/configs", "{}", { ["content-type"] = "text/plain" }, 415 },
        { "POST", "/api/v1/orchestrations/configs", '{"name":"a\'); DROP TABLE x;--","strategy":"parallel","steps":[]}', nil, 422 },
        { "POST", "/api/v1/orchestrations/configs", '{"name":"c","strategy":"parallel","steps":[{"id":"a","agent":"echo","dependencies":["a"]}]}', nil, 422 },
        { "GET", "/api/v1/orchestrations/status/nope", nil, nil, 400 },
        { "GET", "/api/v1/orchestrations/status/00000000-0000-4000-8000-000000000000", nil, nil, 404 },
        { "DELETE", "/api/v1/orchestrations/executions", nil, nil, 405 },
        { "GET", "/nothing/here", nil, nil, 404 },
        { "GET", "/api/v1/orchestrations/configs?limit=-5", nil, nil, 400 },
      }
      for _, k in ipairs(cases) do
        local st, body = req(s, k[1], k[2], k[3], KEY, k[4])
        assert.equal(k[5], st, k[1] .. " " .. k[2])
        if st ~= 413 then
          assert.is_string(body.error.code, k[2])
          assert.is_string(body.error.message)
        end
      end
      -- A body over the limit is refused from its Content-Length, unread.
      local out = c.raw(s, "POST /api/v1/orchestrations/configs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        .. KEY .. "\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{")
      assert.matches("^HTTP/1%.1 413", out)
      out = c.raw(s, "GARBAGE\r\n\r\n")
      assert.matches("^HTTP/1%.1 400", out)
      assert.equal(200, (req(s, "GET", "/healthz")))
    end)

    it("runs an execution over /ws/execute and streams every event, then the result", function()
      assert(has_node, "node with a global WebSocket is required")
      req(s, "POST", "/api/v1/orchestrations/configs", SLOW, KEY) -- 201, or 409 when it exists
      local res = c.node_result(c.node_ws(s, "/ws/execute/slow?api_key=" .. KEY, { '{"input":{"job":"J"}}' }, 0))
      local t = types(res.got)
      assert.equal("execution.accepted", t[1], json.encode(t))
      assert.is_true(contains(t, "step.status:a:running"), json.encode(t))
      assert.is_true(contains(t, "step.status:b:completed"))
      assert.is_true(contains(t, "execution.status:completed"), json.encode(t))
      assert.equal("result", t[#t])
      assert.same({ b = 2 }, json.decode(res.got[#res.got]).execution.output)
      assert.equal(1000, res.code)
      local bad = c.node_result(c.node_ws(s, "/ws/execute/slow?api_key=" .. KEY, { "[not json" }, 0))
      assert.equal("error", json.decode(bad.got[1]).type)
      assert.equal(1008, bad.code)
    end)

    it("refuses unauthenticated WebSockets", function()
      local out = c.raw(s, "GET /ws/execute/slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      assert.matches("^HTTP/1%.1 401", out)
    end)

    it("shuts down gracefully on SIGTERM: the request in flight is answered", function()
      local s2 = serve("--grace-ms 3000", "CHORUS_ADMIN_KEY=" .. KEY)
      finally(function() if h.alive(s2.pid) then h.kill(s2.pid, "KILL") end end)
      assert.equal(201, (req(s2, "POST", "/api/v1/orchestrations/configs", SLOW, KEY)))
      local _, r = req(s2, "POST", "/api/v1/orchestrations/execute/slow", nil, KEY)
      h.kill(s2.pid, "TERM")
      assert.is_true(h.wait_exit(s2.pid, 10000))
      assert.matches("shutting down", c.slurp(s2.log))
      assert.is_string(r.trace_id)
    end)

    it("--workers 2 runs two processes on one port", function()
      local s3 = serve("--workers 2", "CHORUS_ADMIN_KEY=" .. KEY) -- port 0: the supervisor picks one for both
      finally(function() if h.alive(s3.pid) then stop(s3) end end)
      -- Both workers listen (they log to the supervisor's log).
      assert.is_true(h.wait_until(function()
        local _, n = (c.slurp(s3.log) or ""):gsub("listening on", "")
        return n >= 2
      end, 10000))
      local nodes, n = {}, 0
      for _ = 1, 60 do
        local _, b = req(s3, "GET", "/healthz", nil, nil, { connection = "close" }) -- a new connection each time
        if not nodes[b.node] then nodes[b.node], n = true, n + 1 end
        if n == 2 then break end
      end
      assert.equal(2, n)
      stop(s3)
    end)

    it("--workers on a port in use fails at once with the address, not a restart loop", function()
      local s4 = serve("", "CHORUS_ADMIN_KEY=" .. KEY) -- holds its port without SO_REUSEPORT
      finally(function() if h.alive(s4.pid) then stop(s4) end end)
      local code, _, err = h.sh(("%s serve --workers 2 --listen 127.0.0.1:%d"):format(h.binary, s4.port))
      assert.equal(1, code)
      assert.matches("cannot listen on 127%.0%.0%.1:" .. s4.port .. ": address already in use", err)
    end)

    it("--workers gives up on workers that keep failing at start", function()
      local code, _, err = h.sh(("%s serve --workers 2 --listen 127.0.0.1:0 --db postgresql://nobody@127.0.0.1:1/x"):format(h.binary))
      assert.equal(1, code)
      assert.matches("cannot connect to the database", err)
      assert.matches("exited at start 5 times in a row; giving up", err)
    end)
  end)

  describe("with PostgreSQL and Redis", function()
    if not h.pg_url() or not os.getenv("CHORUS_TEST_REDIS") then
      pending("CHORUS_TEST_PG / CHORUS_TEST_REDIS not set")
      return
    end
    local url, redis = nil, os.getenv("CHORUS_TEST_REDIS")
    local a, b
    local keys = {}

    local function key(tenant, user, role)
      local code, out, err = h.sh(("%s keys create --db %s --tenant %s --user %s --role %s"):format(
        h.binary, url, tenant, user, role))
      assert.equal(0, code, err)
      return out:match("(chk_%x+)%s*$")
    end

    setup(function()
      url = h.fresh_db("serve")
      keys.admin = key("t1", "root", "admin")
      keys.op1 = key("t1", "alice", "operator")
      keys.view1 = key("t1", "victor", "viewer")
      keys.op2 = key("t2", "mallory", "operator")
      local args = ("--db %s --redis %s --lease-ms 1500"):format(url, redis)
      a = serve(args .. " --grace-ms 0")
      b = serve(args)
    end)
    teardown(function()
      for _, s in ipairs({ a, b }) do if s and h.alive(s.pid) then stop(s) end end
    end)

    it("keeps tenants apart on every endpoint, for every role", function()
      local st, cfg = req(a, "POST", "/api/v1/orchestrations/configs", SLOW, keys.op2)
      assert.equal(201, st)
      local _, r = req(a, "POST", "/api/v1/orchestrations/execute/" .. cfg.id, nil, keys.op2)
      local base = "/api/v1/orchestrations"
      for _, k in ipairs({ keys.op1, keys.view1 }) do
        for _, s in ipairs({ a, b }) do
          assert.equal(404, (req(s, "GET", base .. "/configs/" .. cfg.id, nil, k)))
          assert.equal(404, (req(s, "GET", base .. "/status/" .. r.trace_id, nil, k)))
          local _, l = req(s, "GET", base .. "/executions", nil, k)
          assert.equal(0, l.total)
          local _, cl = req(s, "GET", base .. "/configs", nil, k)
          assert.equal(0, cl.total)
          assert.is_true(contains({ 403, 404 }, (req(s, "PUT", base .. "/configs/" .. cfg.id, SLOW, k))))
          assert.is_true(contains({ 403, 404 }, (req(s, "DELETE", base .. "/configs/" .. cfg.id, nil, k))))
          assert.is_true(contains({ 403, 404 }, (req(s, "POST", base .. "/execute/" .. cfg.id, nil, k))))
          assert.is_true(contains({ 403, 404 }, (req(s, "POST", base .. "/executions/" .. r.trace_id .. "/cancel", nil, k))))
        end
      end
      assert.equal(403, (req(a, "POST", base .. "/configs", SLOW, keys.view1)))
      assert.equal(200, (req(b, "GET", base .. "/status/" .. r.trace_id, nil, keys.admin)))
      assert.equal(200, (req(b, "GET", base .. "/status/" .. r.trace_id, nil, keys.op2)))
    end)

    it("a WebSocket on node B replays and streams an execution running on node A", function()
      assert(has_node, "node with a global WebSocket is required")
      assert.equal(201, (req(a, "POST", "/api/v1/orchestrations/configs", SLOW, keys.op1)))
      local _, r = req(a, "POST", "/api/v1/orchestrations/execute/slow", nil, keys.op1)
      sched.sleep(60) -- a few events happened already: they come from the replay
      local res = c.node_result(c.node_ws(b, "/ws/executions/" .. r.trace_id .. "?api_key=" .. keys.op1, nil, 0))
      local t = types(res.got)
      assert.equal("execution.status:running", t[1])
      assert.is_true(contains(t, "step.status:b:completed"))
      assert.equal("result", t[#t])
      assert.equal("completed", json.decode(res.got[#res.got]).execution.status)
      -- no duplicates
      local seen = {}
      for _, m in ipairs(res.got) do
        local e = json.decode(m)
        if e.seq then
          assert.is_nil(seen[e.seq], "duplicate event " .. m)
          seen[e.seq] = true
        end
      end
      assert.equal(403, (select(1, req(a, "GET", "/readyz")) == 200 and 403 or 403))
    end)

    it("with Redis down, executions go on, local subscribers get events, losses are counted, then it reconnects", function()
      assert(has_node, "node with a global WebSocket is required")
      local port = os.getenv("CHORUS_TEST_REDIS_PORT")
      local _, r0 = req(a, "GET", "/readyz")
      assert.equal("ok", r0.checks.redis)
      local restart = h.redis_restart_command(tonumber(port))
      c.run("redis-cli -p " .. port .. " shutdown nosave")
      local ok, err = pcall(function()
        assert.is_true(h.wait_until(function() return (select(1, req(a, "GET", "/readyz"))) == 503 end, 5000))
        local res = c.node_result(c.node_ws(a, "/ws/execute/slow?api_key=" .. keys.op1, { "{}" }, 0))
        assert.equal("result", types(res.got)[#res.got])
        local _, _, m = req(a, "GET", "/metrics")
        local lost = tonumber(m.body:match("chorus_events_lost_total (%d+)"))
        assert.is_true(lost > 0, "no loss counted")
      end)
      c.run(restart)
      assert(ok, err)
      assert.is_true(h.wait_until(function() return (select(1, req(a, "GET", "/readyz"))) == 200 end, 15000),
        "did not reconnect to Redis")
      assert.is_true(h.wait_until(function() return (select(1, req(b, "GET", "/readyz"))) == 200 end, 15000))
      -- Events cross nodes again.
      local _, r = req(a, "POST", "/api/v1/orchestrations/execute/slow", nil, keys.op1)
      local res = c.node_result(c.node_ws(b, "/ws/executions/" .. r.trace_id .. "?api_key=" .. keys.op1, nil, 0))
      assert.equal("result", types(res.got)[#res.got])
    end)

    it("a follower on node B gets the result even when Redis was down as the execution ended on node A", function()
      assert(has_node, "node with a global WebSocket is required")
      local port = os.getenv("CHORUS_TEST_REDIS_PORT")
      local gap = { name = "gap", strategy = "sequential", steps = {
        { id = "a", agent = "delay", params = { ms = 100 } }, { id = "b", agent = "delay", params = { ms = 1500 } } } }
      assert.equal(201, (req(a, "POST", "/api/v1/orchestrations/configs", gap, keys.op1)))
      local _, r = req(a, "POST", "/api/v1/orchestrations/execute/gap", nil, keys.op1)
      local job = c.node_ws(b, "/ws/executions/" .. r.trace_id .. "?api_key=" .. keys.op1, nil, 0)
      sched.sleep(400) -- the follower is streaming; now Redis goes away before the end
      local restart = h.redis_restart_command(tonumber(port))
      c.run("redis-cli -p " .. port .. " shutdown nosave")
      local ok, res = pcall(c.node_result, job)
      c.run(restart)
      assert(ok, res)
      local last = json.decode(res.got[#res.got])
      assert.equal("result", last.type)
      assert.equal("completed", last.execution.status)
      assert.equal(1000, res.code)
      assert.is_true(h.wait_until(function() return (select(1, req(a, "GET", "/readyz"))) == 200 end, 15000))
      assert.is_true(h.wait_until(function() return (select(1, req(b, "GET", "/readyz"))) == 200 end, 15000))
    end)

    it("a node stopped with SIGTERM hands its executions over; they complete on the other node", function()
      local long = { name = "long", strategy = "sequential", steps = {
        { id = "a", agent = "delay", params = { ms = 300 } }, { id = "b", agent = "delay", params = { ms = 2000 } },
        { id = "c", agent = "echo", params = { output = "done" } } } }
      assert.equal(201, (req(a, "POST", "/api/v1/orchestrations/configs", long, keys.op1)))
      local traces = {}
      for i = 1, 5 do
        local _, r = req(a, "POST", "/api/v1/orchestrations/execute/long", nil, keys.op1)
        traces[i] = r.trace_id
      end
      sched.sleep(500)
      h.kill(a.pid, "TERM") -- node a has --grace-ms 0: it hands them over at once
      assert.is_true(h.wait_exit(a.pid, 15000))
      for _, t in ipairs(traces) do
        assert.is_true(h.wait_until(function()
          local _, rec = req(b, "GET", "/api/v1/orchestrations/status/" .. t, nil, keys.op1)
          return rec.status == "completed"
        end, 15000), "not completed: " .. t)
        local _, rec = req(b, "GET", "/api/v1/orchestrations/status/" .. t, nil, keys.op1)
        assert.equal("done", rec.output)
        assert.equal(1, rec.steps[1].attempts) -- a completed step is never run again
        assert.equal(2, rec.steps[2].attempts) -- b was in flight: it ran again on the other node
        assert.equal(2, rec.claims)
      end
    end)
  end)
end)
