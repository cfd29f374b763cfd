-- Streamed HTTP responses over loopback: the server's req:stream() (H2O,
-- chunked) read by the client's open() (libcurl), and by curl the
-- command: pieces as they are written, a slow reader holding the writer
-- back, a task cancelled or past its deadline mid-stream (the transfer is
-- aborted and the server's next write says "closed"), a client that
-- disconnects, a handler that fails mid-stream, limits and failures.
local server = require "chorus.http.server"
local client = require "chorus.http.client"
local sched = require "chorus.sched"
local log = require "chorus.log"
local c = require "spec.support.clients"

local q = c.q

local srv, slow_srv
local probe = {}

local function wait_until(fn, ms)
  local deadline = sched.now() + (ms or 5000)
  while not fn() do
    if sched.now() > deadline then return false end
    sched.sleep(2)
  end
  return true
end

local function query(req, name)
  return req.query:match(name .. "=([^&]*)")
end

-- /forever?id=X: a piece every 10 ms until a write fails; probe[X] says
-- how it ended.
local function forever(req)
  local id = query(req, "id")
  local w = assert(req:stream(200, { ["content-type"] = "text/plain" }))
  probe[id] = "running"
  local n = 0
  while true do
    n = n + 1
    local ok, err = w:write("tick" .. n .. ";")
    if not ok then
      probe[id] = err
      return
    end
    sched.sleep(10)
  end
end

local SSE_PIECES = { "\239\187", "\191data: one\r", "\ndata:  two\n\n: note\nid: 7\r\rdata:",
  "{\"long\":\"", string.rep("x", 300), "\"}\nevent\nretry: 50\n\ndata: cut" }

-- A model's stream, cut at awkward places: chunks C reads (one whose
-- data line is followed by a blank-only one), one followed by more data
-- (no longer JSON), a first data line that is not a chunk followed by one
-- that is (read raw: the event's data is both lines), usage, [DONE].
local function chat_chunk_text(content, extra)
  return ('{"id":"c1","object":"chat.completion.chunk","model":"m-1","choices":[{"index":0,'
    .. '"delta":{"content":"%s"},"finish_reason":null}]%s}'):format(content, extra or "")
end
local SSE_CHAT = {
  "data: " .. chat_chunk_text("Hel"):sub(1, 40), chat_chunk_text("Hel"):sub(41) .. "\r\n\r\n",
  "id: 4\nevent: token\ndata: " .. chat_chunk_text("lo \\u00e9") .. "\n\n",
  "data: " .. chat_chunk_text("!") .. "\ndata:  \t\n\n",
  "data: " .. chat_chunk_text("x") .. "\ndata: {\"more\":1}\n\n",
  "data: [1,\ndata: " .. chat_chunk_text("y") .. "\n\n",
  'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"model":"m-1"}\n\n',
  'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n',
  "data: [DONE]\n\n",
}

local function handler(req)
  local p = req.path
  if p == "/drip" then
    local n, ms = tonumber(query(req, "n")) or 5, tonumber(query(req, "ms")) or 10
    local w = assert(req:stream(200, { ["content-type"] = "text/event-stream", ["x-drip"] = n }))
    for i = 1, n do
      assert(w:write("piece" .. i .. ";"))
      sched.sleep(ms)
    end
    return 500, nil, "ignored: the stream answered" -- closed by the server
  elseif p == "/forever" then
    return forever(req)
  elseif p == "/big" then
    -- bytes in 16 KiB writes; records whether a write had to wait.
    local total = tonumber(query(req, "bytes"))
    local piece = string.rep("b", 16384)
    local w = assert(req:stream(200, { ["content-type"] = "application/octet-stream" }))
    probe.big_written, probe.big_waited, probe.big_peak = 0, 0, 0
    while probe.big_written < total do
      local t0 = sched.now()
      probe.big_write_at = t0
      local ok, err = w:write(piece)
      probe.big_write_at = nil
      if not ok then
        probe.big_end = err
        return
      end
      if sched.now() - t0 > 20 then probe.big_waited = probe.big_waited + 1 end
      if w:queued() > probe.big_peak then probe.big_peak = w:queued() end
      probe.big_written = probe.big_written + #piece
    end
    probe.big_end = "done"
    return w:close()
  elseif p == "/fail-mid" then
    local w = assert(req:stream(200))
    assert(w:write("half;"))
    sched.sleep(20)
    error("the handler failed mid-stream")
  elseif p == "/twice" then
    assert(req:stream(200))
    local again, err = req:stream(200)
    local ws, werr = req:websocket()
    probe.twice = { again, err, ws, werr }
    return
  elseif p == "/bad-head" then
    req:stream(200, { ["x-bad"] = "a\r\nb" }) -- raises: a 500
  elseif p == "/sse-pieces" then
    -- An event stream cut at awkward places: a BOM across writes, a CR
    -- ending one write and its LF starting the next, a line across three.
    local w = assert(req:stream(200, { ["content-type"] = "text/event-stream" }))
    for _, piece in ipairs(SSE_PIECES) do
      assert(w:write(piece))
      sched.sleep(5)
    end
    return w:close()
  elseif p == "/sse-chat" then
    local w = assert(req:stream(200, { ["content-type"] = "text/event-stream" }))
    for _, piece in ipairs(SSE_CHAT) do
      assert(w:write(piece))
      sched.sleep(5)
    end
    return w:close()
  elseif p == "/hello" then
    return 200, nil, "hello"
  end
  return 404, nil, "no route"
end

local function url(path, s) return ("http://127.0.0.1:%d%s"):format((s or srv).port, path) end

local function read_all(s)
  local parts = {}
  while true do
    local chunk, err, kind = s:read()
    if not chunk then return table.concat(parts), err, kind, #parts end
    parts[#parts + 1] = chunk
  end
end

local function capture_log(fn)
  local lines, old = {}, log.sink
  log.sink = { write = function(_, s) lines[#lines + 1] = s end }
  local ok, err = pcall(fn)
  log.sink = old
  assert(ok, err)
  return table.concat(lines)
end

describe("streamed HTTP responses", function()
  setup(function()
    c.setup()
    srv = assert(server.listen({ port = 0, stream_max_queued_bytes = 64 * 1024 }, handler))
    slow_srv = assert(server.listen({ port = 0, handler_timeout_ms = 100 }, forever))
  end)

  teardown(function()
    if srv then srv:close({ grace_ms = 1000 }) end
    if slow_srv then slow_srv:close({ grace_ms = 1000 }) end
    c.cleanup()
  end)

  it("hands pieces to the reader as they are written, then the end", function()
    local t0 = sched.now()
    local s, err = client.open({ url = url("/drip?n=5&ms=30") })
    assert(s, err)
    local t_open = sched.now()
    assert.equal(200, s.status)
    assert.equal("text/event-stream", s.headers["content-type"])
    assert.equal("5", s.headers["x-drip"])
    assert.equal("chunked", s.headers["transfer-encoding"])
    local body, rerr, _, pieces = read_all(s)
    assert.is_nil(rerr)
    assert.equal("piece1;piece2;piece3;piece4;piece5;", body)
    -- open returned with the head, well before the body was complete, and
    -- the pieces came as they were written (30 ms apart), not at the end
    assert.is_true(sched.now() - t0 >= 120)
    assert.is_true(t_open - t0 < sched.now() - t0 - 60)
    assert.is_true(pieces >= 3, "pieces arrived one by one, got " .. pieces)
    -- after the end: nil again; after close: closed
    assert.is_nil(s:read())
    s:close()
    local chunk, cerr, kind = s:read()
    assert.is_nil(chunk)
    assert.equal("closed", cerr)
    assert.equal("closed", kind)
  end)

  it("is read whole by curl (chunked on the wire)", function()
    local rc, out = c.run(("curl -sS -N --max-time 10 %s"):format(q(url("/drip?n=3&ms=5"))))
    assert.equal(0, rc)
    assert.equal("piece1;piece2;piece3;", out)
    local r = assert(c.curl(srv, "/hello"))
    assert.equal("hello", r.body)
  end)

  it("aborts the transfer when the reading task is cancelled; the server's next write says closed", function()
    local got = {}
    local t = sched.spawn(function()
      local s = assert(client.open({ url = url("/forever?id=cancel") }))
      while true do
        local chunk, err = s:read()
        if not chunk then
          got.err = err
          return
        end
        got[#got + 1] = chunk
      end
    end)
    assert.is_true(wait_until(function() return #got >= 2 end))
    t:cancel()
    t:join()
    assert.equal("cancelled", got.err)
    assert.is_true(wait_until(function() return probe.cancel == "closed" end, 3000),
      "server saw: " .. tostring(probe.cancel))
    assert.is_true(wait_until(function() return srv:stats().requests_active == 0 end))
  end)

  it("aborts the transfer at a deadline mid-stream", function()
    local t0 = sched.now()
    local first
    local ok, err = sched.with_deadline(150, function()
      local s = assert(client.open({ url = url("/forever?id=deadline") }))
      first = s:read()
      local body, rerr = read_all(s)
      return body, rerr
    end)
    assert.is_nil(ok)
    assert.equal("timeout", err)
    assert.truthy(first and first:match("^tick1;"))
    assert.is_true(sched.now() - t0 >= 140)
    assert.is_true(wait_until(function() return probe.deadline == "closed" end, 3000))
  end)

  it("returns timeout from a read whose task deadline passes, and closed afterwards", function()
    local s = assert(client.open({ url = url("/forever?id=deadline2") }))
    local t = sched.spawn_with({ timeout_ms = 60 }, function()
      return read_all(s)
    end)
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.equal("timeout", err)
    local chunk, err2 = s:read()
    assert.is_nil(chunk)
    assert.equal("timeout", err2)
    s:close()
    assert.is_true(wait_until(function() return probe.deadline2 == "closed" end, 3000))
  end)

  it("notices a client that disconnects mid-stream; the handler's task ends", function()
    local rc = c.run(("curl -sS -N --max-time 0.3 %s"):format(q(url("/forever?id=curl"))))
    assert.equal(28, rc) -- curl's own timeout: it hung up
    assert.is_true(wait_until(function() return probe.curl == "closed" end, 3000))
    assert.is_true(wait_until(function()
      local st = srv:stats()
      return st.requests_active == 0
    end))
  end)

  it("holds a writer back while the reader does not read, without losing a byte", function()
    -- More than loopback's socket buffers can hold (a few MB at most).
    local total = 16 * 1024 * 1024
    local s = assert(client.open({ url = url("/big?bytes=" .. total), buffer_bytes = 64 * 1024,
      max_body_bytes = 32 * 1024 * 1024 }))
    sched.sleep(300)
    -- Paused client, full socket buffers: the handler waits in write().
    assert.is_true(probe.big_written < total, "written " .. probe.big_written)
    assert.is_true(wait_until(function()
      return probe.big_write_at and sched.now() - probe.big_write_at > 100
    end), "the writer never waited")
    local body, err = read_all(s)
    assert.is_nil(err)
    assert.equal(total, #body)
    assert.equal(string.rep("b", 16384), body:sub(-16384))
    assert.equal("done", probe.big_end)
    -- The server's queue stayed near its bound (64 KiB + one write).
    assert.is_true(probe.big_peak <= 64 * 1024 + 16384, "peak " .. probe.big_peak)
  end)

  it("bounds a streamed body with max_body_bytes", function()
    local s = assert(client.open({ url = url("/big?bytes=" .. 1024 * 1024), max_body_bytes = 100000 }))
    local body, err, kind = read_all(s)
    assert.equal("too large", kind)
    assert.truthy(err:find("100000", 1, true))
    assert.is_true(#body <= 100000)
  end)

  -- read_sse splits the lines in C (LuaJIT interns every string: a
  -- model's long, alike lines were each made a string twice over);
  -- fed to the parser they give what the whole text fed at once gives.
  it("splits an event stream into lines as they arrive, as the parser does", function()
    local sse = require "chorus.http.sse"
    local function on(acc, data, event, id) acc[#acc + 1] = { data = data, event = event, id = id } end
    local want, p = {}, sse.new()
    p:feed(table.concat(SSE_PIECES), on, want)
    local want_cut = p:finish()
    local s = assert(client.open({ url = url("/sse-pieces") }))
    local got, q2, reads = {}, sse.new(), 0
    local cut
    while true do
      local lines, err, kind = s:read_sse()
      if lines == false then
        cut = err
        break
      end
      assert(lines, kind)
      reads = reads + 1
      q2:feed_lines(lines, on, got)
    end
    assert.same(want, got)
    assert.equal(2, #got)
    assert.same({ data = "one\n two", event = "message", id = "" }, got[1])
    assert.equal("message", got[2].event)
    assert.equal(("x"):rep(300), got[2].data:match('"long":"(x+)"'))
    assert.equal("7", got[2].id)
    assert.is_true(cut)
    assert.equal(want_cut, q2:finish(cut))
    assert.is_true(reads >= 2)
    s:close()
  end)

  -- read_sse(true) reads the chunks of a model's answer in C (never a
  -- Lua string each, nor tables): what comes out is what decoding each
  -- event's data says, and events that are not plain chunks come raw.
  it("reads a model's chunks in C when asked, and hands the rest over raw", function()
    local sse = require "chorus.http.sse"
    local stream = require "chorus.llm.stream"
    local function read(chat)
      local s = assert(client.open({ url = url("/sse-chat") }))
      local got, p = {}, sse.new()
      local function on_event(acc, data, event, id) acc[#acc + 1] = { "event", data, event, id } end
      local function on_chat(acc, content, finish, model) acc[#acc + 1] = { "chat", content, finish, model } end
      while true do
        local lines, err = s:read_sse(chat)
        if lines == false then break end
        assert(lines, err)
        p:feed_lines(lines, on_event, got, on_chat)
      end
      s:close()
      return got
    end
    local got = read(true)
    assert.same({
      { "chat", "Hel", nil, "m-1" },
      { "chat", "lo \195\169", nil, "m-1" },
      { "chat", "!", nil, "m-1" },
      { "event", '<a chat completion chunk>\n{"more":1}', "message", "4" },
      { "event", "[1,\n" .. chat_chunk_text("y"), "message", "4" },
      { "chat", "", "stop", "m-1" },
      { "event", '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}', "message", "4" },
      { "event", "[DONE]", "message", "4" },
    }, got)
    -- Without chat, every event is raw; its chunks decode to the same.
    local raw = read(false)
    assert.equal(#got, #raw)
    for i, g in ipairs(got) do
      if g[1] == "chat" then
        local content, finish, model = stream.fields(require("chorus.json").decode(raw[i][2]))
        assert.same({ g[2], g[3], g[4] }, { content or "", finish, model })
      end
    end
  end)

  it("cuts the stream of a handler that fails mid-stream, and the reader is told", function()
    require("spec.support.log_guard").expect("http: handler error on GET /fail-mid") -- on purpose
    local before = srv:stats().handler_errors
    local body, err, kind
    local logged = capture_log(function()
      local s = assert(client.open({ url = url("/fail-mid") }))
      body, err, kind = read_all(s)
    end)
    assert.equal("half;", body)
    assert.equal("connection error", kind, tostring(err))
    assert.is_true(wait_until(function() return srv:stats().handler_errors == before + 1 end))
    assert.truthy(logged:find("the handler failed mid-stream", 1, true))
  end)

  it("cuts the stream of a handler that passes handler_timeout_ms", function()
    local s = assert(client.open({ url = url("/forever?id=slow", slow_srv) }))
    local _, err, kind = read_all(s)
    assert.equal("connection error", kind, tostring(err))
    assert.equal("timeout", probe.slow)
    assert.equal(1, slow_srv:stats().handler_timeouts)
  end)

  it("refuses a second answer once streaming, and a bad head is a 500", function()
    require("spec.support.log_guard").expect("http: handler error on GET /bad-head") -- on purpose
    local s = assert(client.open({ url = url("/twice") }))
    assert.equal("", (read_all(s)))
    assert.same({ nil, "answered", nil, "answered" }, { probe.twice[1], probe.twice[2], probe.twice[3], probe.twice[4] })
    local logged = capture_log(function()
      local r = assert(client.get(url("/bad-head")))
      assert.equal(500, r.status)
    end)
    assert.truthy(logged:find("CR, LF", 1, true), logged)
  end)

  it("fails to open as the request does: refused, TLS to a plain port, bad options", function()
    local s, err, kind = client.open({ url = "http://127.0.0.1:1/x" })
    assert.is_nil(s)
    assert.equal("connection refused", kind, err)
    s, err, kind = client.open({ url = ("https://127.0.0.1:%d/hello"):format(srv.port) })
    assert.is_nil(s)
    assert.equal("tls error", kind, err)
    s, err, kind = client.open({ url = url("/hello"), buffer_bytes = 0 })
    assert.is_nil(s)
    assert.equal("invalid request", kind, err)
    s, err, kind = client.open({ url = "ftp://x/" })
    assert.is_nil(s)
    assert.equal("bad url", kind, err)
    -- a plain response reads as a stream too
    s = assert(client.open({ url = url("/hello") }))
    assert.equal(200, s.status)
    assert.equal("hello", (read_all(s)))
  end)

  it("cuts a stream still open when a graceful close runs out of grace", function()
    local own = assert(server.listen({ port = 0 }, forever))
    local s = assert(client.open({ url = url("/x?id=grace", own) }))
    assert.truthy(s:read())
    local t0 = sched.now()
    own:close({ grace_ms = 100, wait = false })
    local _, _, kind = read_all(s)
    assert.equal("connection error", kind)
    assert.is_true(sched.now() - t0 >= 90)
    assert.is_true(own:wait_closed())
    assert.is_true(wait_until(function() return probe.grace == "closed" end))
  end)
end)
