-- chorus.http.server against real clients: curl, bash's /dev/tcp for raw
-- bytes, and node's built-in WebSocket for WebSockets.
--
-- The server runs in this process, on the loop busted itself runs on, so a
-- client must never block the loop: os.execute() would. Every client runs
-- as a background shell job, `(cmd) >out 2>err; echo $? >rc` started with
-- `... &` (os.execute returns as soon as the shell has forked it), and the
-- spec polls for the rc file with sched.sleep, which yields to the loop so
-- the server keeps serving. The rc file is written under a temporary name
-- and renamed, so it is never read half-written.
--
-- Needs: curl, bash, and node >= 20.10 (global WebSocket; node 20/21 need
-- --experimental-websocket, which is detected).
local server = require "chorus.http.server"
local sched = require "chorus.sched"
local json = require "chorus.json"
local log = require "chorus.log"

-- ---- background jobs ------------------------------------------------------

local c = require "spec.support.clients"
local tmp, q, slurp, write, bg, run = c.tmp, c.q, c.slurp, c.write, c.bg, c.run
local curl_job, finish_curl, curl, raw = c.curl_job, c.finish_curl, c.curl, c.raw
local node_ws, node_result, stuck_ws_client = c.node_ws, c.node_result, c.stuck_ws_client
local has_node

-- ---- log capture -----------------------------------------------------------

local function capture_log(fn)
  local lines, old = {}, log.sink
  log.sink = { write = function(_, s) lines[#lines + 1] = s end }
  local ok, err = pcall(fn)
  log.sink = old
  assert(ok, err)
  return table.concat(lines)
end

local function wait_until(fn, ms)
  local deadline = sched.now() + (ms or 5000)
  while not fn() do
    if sched.now() > deadline then return false end
    sched.sleep(2)
  end
  return true
end

-- ---- the server under test ----------------------------------------------------

local srv
local probe = {}

local function handler(req)
  local p = req.path
  if p == "/hello" then
    return 200, { ["content-type"] = "text/plain", ["x-multi"] = { "a", "b" }, ["x-num"] = 42 },
      "hello " .. req.query
  elseif p == "/echo" then
    return 201, { ["x-method"] = req.method, ["x-header-in"] = req.headers["x-test"] or "" },
      req.body
  elseif p == "/info" then
    return 200, nil, { method = req.method, path = req.path, query = req.query,
      headers = req.headers, remote = req.remote, version = req.version, is_websocket = req.is_websocket }
  elseif p == "/sleep" then
    local ms = tonumber(req.query:match("ms=(%d+)")) or 50
    probe.sleeping = (probe.sleeping or 0) + 1
    sched.sleep(ms)
    probe.slept = (probe.slept or 0) + 1
    return 200, nil, "slept " .. ms
  elseif p == "/ka" then
    return 200, nil, "k"
  elseif p == "/boom" then
    error("boom from the handler")
  elseif p == "/bad-answer" then
    return 200, { ["x-bad"] = "a\r\nx-injected: yes" }, "x"
  elseif p == "/no-status" then
    return nil
  elseif p == "/ws" then
    local ws, err = req:websocket()
    if not ws then return 400, nil, err end
    assert(ws:send("welcome"))
    while true do
      local msg, kind = ws:receive(10000)
      if not msg then probe.ws_end = kind break end
      assert(ws:send("echo:" .. msg))
    end
    return
  elseif p == "/push" then
    local ws = assert(req:websocket())
    for i = 1, 3 do
      assert(ws:send("tick" .. i))
      sched.sleep(10)
    end
    ws:close(1000)
    probe.push_end = { ws:receive(2000) }
    return
  elseif p == "/flood" then
    -- Send 16 KiB messages as fast as the client takes them: on
    -- backpressure, wait for the queue to drain, but drop a client that
    -- has not taken anything for 1 s (the slow-consumer policy).
    local ws = assert(req:websocket())
    local chunk = string.rep("x", 16 * 1024)
    local sent, err = 0, nil
    for i = 1, (tonumber(req.query:match("n=(%d+)")) or 100000) do
      local ok, e = ws:send(chunk)
      local waited = 0
      while e == "backpressure" and waited < 1000 do
        sched.sleep(10)
        waited = waited + 10
        ok, e = ws:send(chunk)
      end
      if not ok then err = e break end
      sent = sent + 1
      if i % 8 == 0 then sched.sleep(0) end
    end
    probe.flood = { sent = sent, err = err }
    if err == "backpressure" then ws:close(1008) end
    if err == nil then ws:send("done") end
    probe.flood.closed = { ws:receive(5000) }
    probe.flood_at = sched.now()
    return
  elseif p == "/ws-wait" then
    local ws = assert(req:websocket())
    local _, e = ws:receive(50) -- the client sends nothing
    ws:send("first:" .. tostring(e))
    local child = sched.spawn(function() return ws:receive(2000) end)
    sched.sleep(0) -- the child is now waiting in receive
    _, e = ws:receive(10)
    ws:send("busy:" .. tostring(e))
    child:cancel()
    probe.ws_task = sched.current()
    _, e = ws:receive() -- no timeout: until the spec cancels this task
    ws:send("second:" .. tostring(e))
    return
  elseif p == "/ws-lazy" then
    -- Reads nothing for a while, then drains until closed.
    local ws = assert(req:websocket())
    sched.sleep(300)
    local n = 0
    while ws:receive(2000) do n = n + 1 end
    probe["lazy_" .. req.query] = n
    return
  elseif p == "/many-headers" then
    -- More headers than the binding's stack array holds (16)
    local hs = {}
    for i = 1, 20 do hs["x-h" .. i] = tostring(i) end
    return 200, hs, "many"
  elseif p == "/not-ws" then
    local ws, err = req:websocket()
    return 400, nil, tostring(ws) .. " " .. tostring(err)
  end
  return 404, nil, { error = { code = "not_found", message = "no route" } }
end

describe("chorus.http.server", function()
  setup(function()
    has_node = c.setup()
    local err
    srv, err = server.listen({ port = 0, max_body_bytes = 1024, max_header_bytes = 8192,
      ws_max_queued_bytes = 256 * 1024, ws_close_timeout_ms = 300 }, handler)
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:close({ grace_ms = 1000 }) end
    c.cleanup()
  end)

  it("listens on the port it reports (port 0 picks one)", function()
    assert.is_true(srv.port > 0 and srv.port < 65536)
    assert.equal("127.0.0.1", srv.host)
  end)

  it("answers a GET with status, headers and body", function()
    local r = assert(curl(srv, "/hello?a=1&b=2"))
    assert.equal(200, r.status)
    assert.equal("hello a=1&b=2", r.body)
    assert.equal("text/plain", r.headers["content-type"])
    assert.equal("42", r.headers["x-num"])
    assert.equal("13", r.headers["content-length"])
    assert.equal("keep-alive", r.headers["connection"]:lower())
  end)

  it("sends every value of a repeated header", function()
    local r = assert(curl(srv, "/hello"))
    local _, out = run(("curl -sS -i %s"):format(q(("http://127.0.0.1:%d/hello"):format(srv.port))))
    assert.equal(200, r.status)
    assert.truthy(out:find("x-multi: a\r\n", 1, true))
    assert.truthy(out:find("x-multi: b\r\n", 1, true))
  end)

  it("sends more headers than fit the binding's stack array", function()
    local r = assert(curl(srv, "/many-headers"))
    assert.equal(200, r.status)
    assert.equal("many", r.body)
    for i = 1, 20 do assert.equal(tostring(i), r.headers["x-h" .. i]) end
  end)

  it("gives the handler method, path, query, headers, body and peer", function()
    local r = assert(curl(srv, "/info?x=%2F&y", "-H 'X-Test: One' -H 'X-Test: Two' -H 'Cookie: a=b'"))
    assert.equal(200, r.status)
    assert.equal("application/json", r.headers["content-type"])
    local info = json.decode(r.body)
    assert.equal("GET", info.method)
    assert.equal("/info", info.path)
    assert.equal("x=%2F&y", info.query)
    assert.equal("One, Two", info.headers["x-test"])
    assert.equal("a=b", info.headers.cookie)
    assert.equal(("127.0.0.1:%d"):format(srv.port), info.headers.host)
    assert.equal("127.0.0.1", info.remote)
    assert.equal("1.1", info.version)
    assert.is_false(info.is_websocket)
  end)

  it("POSTs a body and echoes headers in and out", function()
    local file = tmp .. "/post-body"
    write(file, "line1\nline2\0binary")
    local r = assert(curl(srv, "/echo", "-X PUT -H 'X-Test: in' --data-binary @" .. q(file)))
    assert.equal(201, r.status)
    assert.equal("line1\nline2\0binary", r.body)
    assert.equal("PUT", r.headers["x-method"])
    assert.equal("in", r.headers["x-header-in"])
  end)

  it("answers 404 from the handler with a JSON body", function()
    local r = assert(curl(srv, "/nowhere"))
    assert.equal(404, r.status)
    assert.same({ error = { code = "not_found", message = "no route" } }, json.decode(r.body))
  end)

  it("answers HEAD without a body", function()
    local r = assert(curl(srv, "/hello", "-I"))
    assert.equal(200, r.status)
    assert.equal("", r.body)
    assert.equal("6", r.headers["content-length"])
  end)

  it("defers: a handler that sleeps answers later, and others are not held up", function()
    local t0 = sched.now()
    local r = assert(curl(srv, "/sleep?ms=80"))
    assert.equal(200, r.status)
    assert.equal("slept 80", r.body)
    assert.is_true(sched.now() - t0 >= 80)
    -- 10 sleeping requests at once take about one sleep, not ten.
    t0 = sched.now()
    local rc, out = run(("curl -sS -Z --parallel-max 10 -w '%%{http_code}\\n' %s"):format(
      q(("http://127.0.0.1:%d/sleep?ms=300&i=[1-10]"):format(srv.port))))
    assert.equal(0, rc)
    local _, n = out:gsub("200\n", "")
    assert.equal(10, n)
    assert.is_true(sched.now() - t0 < 2500, "took " .. (sched.now() - t0))
  end)

  it("serves 1000 keep-alive requests on one connection", function()
    local before = srv:stats()
    local rc, out = run(("curl -sS -w '%%{http_code}\\n' %s"):format(
      q(("http://127.0.0.1:%d/ka?i=[1-1000]"):format(srv.port))), 60000)
    assert.equal(0, rc)
    local _, n = out:gsub("k200\n", "")
    assert.equal(1000, n)
    local after = srv:stats()
    assert.equal(1000, after.requests - before.requests)
    assert.equal(1, after.connections_total - before.connections_total)
  end)

  it("turns a handler error into a 500 JSON, logs the traceback, and carries on", function()
    require("spec.support.log_guard").expect("http: handler error on GET /boom") -- on purpose
    require("spec.support.log_guard").expect("http: bad answer from the handler")
    local errors0 = srv:stats().handler_errors
    local r
    local logged = capture_log(function() r = assert(curl(srv, "/boom")) end)
    assert.equal(500, r.status)
    assert.equal("application/json", r.headers["content-type"])
    assert.same({ error = { code = "internal_error", message = "internal server error" } },
      json.decode(r.body))
    assert.falsy(r.body:find("boom"))
    assert.truthy(logged:find("boom from the handler", 1, true))
    assert.truthy(logged:find("stack traceback", 1, true))
    assert.equal(errors0 + 1, srv:stats().handler_errors)
    -- An invalid answer (CR/LF in a header value) and a missing status too.
    logged = capture_log(function() r = assert(curl(srv, "/bad-answer")) end)
    assert.equal(500, r.status)
    assert.is_nil(r.headers["x-injected"])
    assert.truthy(logged:find("invalid header value", 1, true))
    logged = capture_log(function() r = assert(curl(srv, "/no-status")) end)
    assert.equal(500, r.status)
    assert.truthy(logged:find("no status", 1, true))
    r = assert(curl(srv, "/hello"))
    assert.equal(200, r.status)
  end)

  it("answers 413 to an oversize body without calling the handler", function()
    local before = srv:stats().requests
    local file = tmp .. "/big-body"
    write(file, string.rep("z", 4096))
    -- Expect: 100-continue makes curl wait for the answer to the head.
    local r = assert(curl(srv, "/echo", "-H 'Expect: 100-continue' --data-binary @" .. q(file)))
    assert.equal(413, r.status)
    -- Content-Length alone is enough: the head only, over raw TCP.
    local out = raw(srv, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 413 "), out)
    assert.equal(before, srv:stats().requests)
  end)

  it("answers 431 to oversize headers and 400 to a malformed request line", function()
    local r = assert(curl(srv, "/hello", "-H " .. q("X-Big: " .. string.rep("b", 9000))))
    assert.equal(431, r.status)
    local out = raw(srv, "BLAH\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 400 "), out)
    out = raw(srv, "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 400 "), out)
    assert.equal(200, assert(curl(srv, "/hello")).status)
  end)

  it("survives a client that leaves while its answer is pending", function()
    probe.slept = 0
    local active0 = srv:stats().connections_active
    local rc = run(("curl -sS --max-time 0.1 %s"):format(
      q(("http://127.0.0.1:%d/sleep?ms=300"):format(srv.port))))
    assert.equal(28, rc) -- curl's timeout
    assert.is_true(wait_until(function() return probe.slept == 1 end, 3000))
    -- The late answer is written to a closed socket; h2o closes it.
    assert.is_true(wait_until(function()
      local st = srv:stats()
      return st.requests_active == 0 and st.connections_active <= active0
    end, 3000))
    assert.equal(200, assert(curl(srv, "/hello")).status)
  end)

  it("echoes WebSocket messages and pushes from the server", function()
    assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
    local before = srv:stats()
    local res = node_result(node_ws(srv, "/ws", { "hello", "world" }, 3))
    assert.same({ "welcome", "echo:hello", "echo:world" }, res.got)
    assert.equal(1000, res.code)
    assert.is_true(wait_until(function() return probe.ws_end ~= nil end))
    assert.equal("closed", probe.ws_end)
    res = node_result(node_ws(srv, "/push", nil, 0))
    assert.same({ "tick1", "tick2", "tick3" }, res.got)
    assert.equal(1000, res.code)
    assert.is_true(wait_until(function() return probe.push_end ~= nil end))
    assert.same({ nil, "closed" }, probe.push_end)
    local after = srv:stats()
    assert.equal(2, after.websockets_total - before.websockets_total)
    assert.is_true(wait_until(function() return srv:stats().websockets_active == 0 end))
  end)

  it("refuses req:websocket() on a plain request", function()
    local r = assert(curl(srv, "/not-ws"))
    assert.equal(400, r.status)
    assert.equal("nil not a websocket request", r.body)
  end)

  it("lets a handler drop a slow WebSocket consumer (backpressure)", function()
    assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
    -- A reading client gets everything: 200 x 16 KiB, no backpressure.
    probe.flood = nil
    local res = node_result(node_ws(srv, "/flood?n=200", nil, 201))
    assert.equal(201, #res.got)
    assert.equal("done", res.got[201])
    assert.is_true(wait_until(function() return probe.flood and probe.flood.closed end))
    assert.same({ sent = 200, closed = { nil, "closed" } }, probe.flood)
    -- A client that never reads: kernel buffers fill, then the queue.
    probe.flood = nil
    local job = stuck_ws_client(srv, "/flood", 30)
    assert.is_true(wait_until(function() return probe.flood ~= nil end, 15000))
    assert.equal("backpressure", probe.flood.err)
    assert.is_true(probe.flood.sent > 16)
    -- Closing (1008) gets no answer: the socket is shut after 300 ms.
    assert.is_true(wait_until(function() return probe.flood.closed ~= nil end, 5000))
    assert.same({ nil, "closed" }, probe.flood.closed)
    assert.is_true(wait_until(function() return srv:stats().websockets_active == 0 end))
    job:stop()
  end)

  it("times out and cancels ws:receive, and refuses a second receiver", function()
    assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
    probe.ws_task = nil
    local job = node_ws(srv, "/ws-wait", nil, 3)
    assert.is_true(wait_until(function() return probe.ws_task ~= nil end, 10000))
    sched.sleep(20)
    probe.ws_task:cancel()
    local res = node_result(job)
    assert.same({ "first:timeout", "busy:busy", "second:cancelled" }, res.got)
  end)

  describe("with tight limits", function()
    local tight
    setup(function()
      tight = assert(server.listen({ request_timeout_ms = 200, handler_timeout_ms = 100,
        ws_max_message_bytes = 1024, ws_max_inbound_bytes = 4096 }, handler))
    end)
    teardown(function() tight:close() end)

    it("closes a WebSocket whose message is too big (1009)", function()
      assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
      local res = node_result(node_ws(tight, "/ws-lazy?big", { string.rep("m", 2000) }, 0))
      assert.equal(1009, res.code)
    end)

    it("closes a WebSocket whose handler does not read (1008)", function()
      assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
      local msgs = {}
      for i = 1, 10 do msgs[i] = string.rep(tostring(i % 10), 1000) end
      local res = node_result(node_ws(tight, "/ws-lazy?many", msgs, 0))
      assert.equal(1008, res.code)
      -- What was queued before the limit is still delivered.
      assert.is_true(wait_until(function() return probe.lazy_many ~= nil end, 5000))
      assert.equal(4, probe.lazy_many)
    end)

    it("drops a client that sends its request too slowly", function()
      local t0 = sched.now()
      local out = raw(tight, "GET /hello HTTP/1.1\r\nHost: x\r\n")
      local took = sched.now() - t0
      assert.equal("", out)
      assert.is_true(took >= 150 and took < 3000, "took " .. took)
    end)

    it("answers 503 when a handler passes handler_timeout_ms", function()
      local t0 = sched.now()
      local r = assert(curl(tight, "/sleep?ms=2000"))
      assert.equal(503, r.status)
      assert.same({ error = { code = "timeout", message = "the request took too long" } },
        json.decode(r.body))
      assert.is_true(sched.now() - t0 < 1500)
      assert.equal(1, tight:stats().handler_timeouts)
      assert.equal(200, assert(curl(tight, "/hello")).status)
    end)
  end)

  it("rejects connections over max_connections with 503", function()
    local tiny = assert(server.listen({ max_connections = 1 }, function()
      sched.sleep(400)
      return 200, nil, "slow"
    end))
    local first = curl_job(tiny, "/")
    assert.is_true(wait_until(function() return tiny:stats().connections_active == 1 end))
    local r = assert(curl(tiny, "/"))
    assert.equal(503, r.status)
    assert.truthy(r.body:find("too many connections", 1, true))
    assert.equal(200, assert(finish_curl(first)).status)
    assert.equal(1, tiny:stats().connections_rejected)
    assert.is_true(tiny:close())
  end)

  it("fails to listen on a port in use, as a value", function()
    local other, err = server.listen({ port = srv.port }, handler)
    assert.is_nil(other)
    assert.truthy(err:find("address already in use", 1, true), err)
    local a = assert(server.listen({ port = 0, reuseport = true }, handler))
    local b = assert(server.listen({ port = a.port, reuseport = true }, handler))
    assert.equal(a.port, b.port)
    assert.is_true(a:close())
    assert.is_true(b:close())
  end)

  it("closes gracefully: in-flight requests finish, WebSockets get 1001, then nothing is open", function()
    assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
    local s = assert(server.listen({}, handler))
    probe.sleeping, probe.slept, probe.ws_end = 0, 0, nil
    local idle = bg(("curl -sS -o /dev/null %s"):format(q(("http://127.0.0.1:%d/hello"):format(s.port))))
    idle:wait()
    local ws_job = node_ws(s, "/ws", nil, 0)
    assert.is_true(wait_until(function() return s:stats().websockets_active == 1 end))
    local slow = curl_job(s, "/sleep?ms=500")
    assert.is_true(wait_until(function() return probe.sleeping == 1 end))
    assert.equal(0, probe.slept)
    assert.is_true(s:close())
    assert.equal(1, probe.slept) -- close waited for it
    -- The in-flight request completed, told to close its connection.
    local r = assert(finish_curl(slow))
    assert.equal(200, r.status)
    assert.equal("slept 500", r.body)
    assert.equal("close", r.headers["connection"]:lower())
    local res = node_result(ws_job)
    assert.same({ "welcome" }, res.got)
    assert.equal(1001, res.code)
    assert.equal("closed", probe.ws_end)
    assert.is_true(s:is_closed())
    local st = s:stats()
    assert.equal(0, st.connections_active)
    assert.equal(0, st.requests_active)
    assert.equal(0, st.websockets_active)
    -- The port is closed.
    local rc = run(("curl -sS %s"):format(q(("http://127.0.0.1:%d/hello"):format(s.port))))
    assert.equal(7, rc) -- couldn't connect
    assert.is_true(s:close()) -- closing twice is fine
  end)

  it("lets a process end with a server still open: clients are answered, nothing leaks", function()
    assert(has_node, "node >= 20.10 (global WebSocket) is required for the WebSocket specs")
    -- The same binary as this one (normal or sanitizer build).
    local p = io.popen("readlink /proc/" .. require("chorus.native").pid() .. "/exe")
    local exe = p:read("*l")
    p:close()
    local script = tmp .. "/exit_open.lua"
    write(script, ([[
      local server = require "chorus.http.server"
      local sched = require "chorus.sched"
      local srv = assert(server.listen({ port = 0 }, function(req)
        if req.path == "/ws" then
          local ws = assert(req:websocket())
          ws:send("hi")
          ws:receive()
          return
        end
        sched.sleep(5000) -- cancelled when the process ends
        return 200, nil, "late"
      end))
      local f = assert(io.open(%q, "w")) f:write(srv.port) f:close()
      while srv:stats().requests_active + srv:stats().websockets_active < 2 do
        sched.sleep(5)
      end
      return 0 -- the server is never closed
    ]]):format(tmp .. "/exit_port"))
    local proc = bg(q(exe) .. " lua " .. q(script))
    -- The file exists (empty) before the port is written into it.
    assert.is_true(wait_until(function() return tonumber(slurp(tmp .. "/exit_port") or "") ~= nil end, 10000))
    local port = tonumber(slurp(tmp .. "/exit_port"))
    local fake = { port = port }
    local ws_job = node_ws(fake, "/ws", nil, 0)
    local req_job = curl_job(fake, "/slow")
    local rc, out, err = proc:wait(20000)
    assert.equal(0, rc, out .. err)
    assert.falsy(err:find("ERROR", 1, true), err)         -- sanitizers
    assert.falsy(err:find("left open", 1, true), err)     -- uv_loop_close
    local r = assert(finish_curl(req_job))
    assert.equal(200, r.status)
    local res = node_result(ws_job)
    assert.same({ "hi" }, res.got)
    assert.equal(1000, res.code)
  end)

  it("answers 503 to requests still pending when the grace ends", function()
    local s = assert(server.listen({}, function()
      sched.sleep(1500)
      return 200, nil, "too late"
    end))
    local job = curl_job(s, "/")
    assert.is_true(wait_until(function() return s:stats().requests_active == 1 end))
    local t0 = sched.now()
    assert.is_true(s:close({ grace_ms = 100 }))
    assert.is_true(sched.now() - t0 < 2000)
    local r = assert(finish_curl(job))
    assert.equal(503, r.status)
    assert.truthy(r.body:find("shutting down", 1, true))
  end)
end)
