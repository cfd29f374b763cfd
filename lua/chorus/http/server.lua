-- chorus.http.server: HTTP/1.1 + WebSocket server (H2O on the chorus loop).
--
--   local server = require "chorus.http.server"
--   local srv, err = server.listen({ host = "127.0.0.1", port = 0 }, function(req)
--     return 200, { ["content-type"] = "text/plain" }, "hello " .. req.path
--   end)
--   print(srv.port)          -- the port actually bound (port 0 picks one)
--   srv:close()              -- graceful; waits until everything is closed
--
-- No routing here: one handler receives every request (a router goes on
-- top). TLS and HTTP/2 belong to a reverse proxy in front.
--
-- The handler runs in a NEW detached task for every request, so it may
-- yield (sleep, database queries, HTTP calls). It receives a request table:
--   req.method, req.path (raw, before '?', not percent-decoded),
--   req.query (raw text after '?', "" when none), req.headers (lower-case
--   names; repeated headers joined with ", "), req.body (string, "" when
--   none), req.remote (peer address), req.remote_port, req.version
--   ("1.1" | "1.0"), req.is_websocket (true for a WebSocket handshake)
-- and answers by RETURNING `status, headers, body`:
--   status   number 200..599
--   headers  table name -> string | number | array of strings, or nil
--            (content-length, transfer-encoding and connection are the
--            server's own and are ignored)
--   body     string, nil (empty), or a table: encoded as JSON, with
--            content-type application/json unless headers give one
-- An error raised by the handler, or an invalid answer, becomes a 500 with
-- the body {"error":{"code":"internal_error","message":"internal server
-- error"}}; the error is logged with its traceback and counted in
-- stats().handler_errors. The server carries on.
--
-- WebSocket: inside the handler, `local ws, err = req:websocket()` answers
-- the handshake (101) and returns a socket; the handler's task owns it and
-- the socket is closed (1000) when the handler returns (its return values
-- are then ignored):
--   ws:send(data [, binary]) -> true | nil, "backpressure" | "closed"
--       "backpressure": more than ws_max_queued_bytes are waiting for a
--       slow client; nothing was queued; drop the message or ws:close().
--   ws:receive([timeout_ms]) -> message, "text"|"binary"
--       | nil, "closed" | "timeout" | "cancelled" | "busy"
--   ws:close([code])  -- closing handshake (default 1000)
--   ws:is_open(), ws:queued() -> outbound bytes queued, inbound not read
-- req:websocket() fails with nil, "not a websocket request" | "closed".
--
-- Streamed responses: inside the handler, `local w = req:stream(status,
-- headers)` sends the head now and returns a writer (or nil, "closed");
-- the body goes out piece by piece (chunked for a 200, else until the
-- connection closes), and the handler's return values are then ignored:
--   w:write(data) -> true | nil, "closed" | "timeout" | "cancelled"
--       yields while more than stream_max_queued_bytes wait for a slow
--       client; "closed": the client went away (found out when a write
--       fails), so stop producing
--   w:close() -> true | nil, "closed"   the last chunk: the body is complete
--   w:abort()                            cut the body: the client sees it
--                                        incomplete (what an error does)
--   w:queued() -> bytes not yet taken by the socket
-- When the handler returns, an open stream is closed (complete); when it
-- raises or passes handler_timeout_ms, the stream is cut and the error
-- logged and counted. A graceful close lets streams run until its grace
-- ends, then cuts them.
--
-- Limits (options of listen; defaults in brackets): max_body_bytes [1 MiB]
-- (413 before the body is read), max_header_bytes [64 KiB] (431),
-- request_timeout_ms [10000] (receiving one request / keep-alive idle),
-- max_connections [10000] (503 beyond), max_client_connections [2048]
-- (from one client address; 429 beyond), ws_max_queued_bytes [1 MiB],
-- ws_max_message_bytes [1 MiB] (inbound; close 1009), ws_max_inbound_bytes
-- [4 MiB] (received and not yet read by the handler; close 1008),
-- ws_close_timeout_ms [5000], stream_max_queued_bytes [256 KiB],
-- backlog [511], reuseport [false]
-- (SO_REUSEPORT: several processes share the port), host ["127.0.0.1"],
-- handler_timeout_ms [none]: the deadline of a plain request's task; when
-- it passes, the handler's waits return nil, "timeout" and, whatever it
-- returns, the client gets 503 {"error":{"code":"timeout",...}} (counted in
-- stats().handler_timeouts). WebSocket handlers have no deadline.
local native = require "chorus.native"
local json = require "chorus.json"
local log = require "chorus.log"

local type, pairs, xpcall, pcall, setmetatable = type, pairs, xpcall, pcall, setmetatable
local traceback, lower = debug.traceback, string.lower
local cancelled = native.cancelled

local M = {}

M.INTERNAL_ERROR_BODY =
  '{"error":{"code":"internal_error","message":"internal server error"}}'
local JSON_HEADERS = { ["content-type"] = "application/json" }
local TIMEOUT_BODY = '{"error":{"code":"timeout","message":"the request took too long"}}'

-- The request table's methods.
local Request = {}
Request.__index = Request

-- req:websocket() -> ws | nil, err
function Request:websocket()
  if self._ws or self._stream then return nil, "answered" end
  local ws, err = self._handle:websocket()
  if ws then self._ws = ws end
  return ws, err
end

local Writer = {}
Writer.__index = Writer

function Writer:write(data) return self._h:write(data) end
function Writer:close() return self._h:finish(true) end
function Writer:abort() self._h:finish(false) end
function Writer:queued() return self._h:queued() end

-- req:stream(status, headers) -> writer | nil, err (see the top)
function Request:stream(status, headers)
  if self._ws or self._stream then return nil, "answered" end
  local ok, err = self._handle:stream(status, headers)
  if not ok then return nil, err end
  local w = setmetatable({ _h = self._handle }, Writer)
  self._stream = w
  return w
end

local function has_content_type(headers)
  for k in pairs(headers) do
    if type(k) == "string" and lower(k) == "content-type" then return true end
  end
  return false
end

-- Turns a handler's answer into respond() arguments, or nil, why.
local function normalize(status, headers, body)
  if type(status) ~= "number" then
    return nil, "handler returned no status (got " .. type(status) .. ")"
  end
  if headers ~= nil and type(headers) ~= "table" then
    return nil, "headers must be a table, got " .. type(headers)
  end
  if type(body) == "table" then
    local s, err = json.encode(body)
    if not s then return nil, "cannot encode the body as JSON: " .. tostring(err) end
    body = s
    if headers == nil then
      headers = JSON_HEADERS
    elseif not has_content_type(headers) then
      local h = { ["content-type"] = "application/json" }
      for k, v in pairs(headers) do h[k] = v end
      headers = h
    end
  elseif body ~= nil and type(body) ~= "string" then
    return nil, "body must be a string, a table or nil, got " .. type(body)
  end
  return status, headers, body
end

local function answer_500(h)
  h:respond(500, JSON_HEADERS, M.INTERNAL_ERROR_BODY)
end

-- The function run (in a new task) for every request.
local function make_runner(handler, counters)
  return function(req, h)
    req._handle = h
    setmetatable(req, Request)
    local ok, status, headers, body = xpcall(handler, traceback, req)
    if req._stream then
      -- The body went out as it was written; the handler's values mean
      -- nothing now. A stream left open is complete unless it failed.
      local timed_out = cancelled() == "timeout"
      if not ok or timed_out then
        if timed_out then
          counters.timeouts = counters.timeouts + 1
          log.warn("http: handler timeout on %s %s (stream cut)", req.method, req.path)
        else
          counters.errors = counters.errors + 1
          log.error("http: handler error on %s %s (stream cut): %s", req.method, req.path, status)
        end
        return h:finish(false)
      end
      return h:finish(true)
    end
    local ws = req._ws
    if ws then
      -- The handler owned the socket; it ends with the handler.
      if ws:is_open() then ws:close(1000) end
      if not ok then
        counters.errors = counters.errors + 1
        log.error("http: websocket handler error on %s: %s", req.path, status)
      end
      return
    end
    if cancelled() == "timeout" then
      -- Past handler_timeout_ms: whatever the handler made of its failed
      -- waits, the client is told it took too long.
      counters.timeouts = counters.timeouts + 1
      log.warn("http: handler timeout on %s %s", req.method, req.path)
      return h:respond(503, JSON_HEADERS, TIMEOUT_BODY)
    end
    if not ok then
      counters.errors = counters.errors + 1
      log.error("http: handler error on %s %s: %s", req.method, req.path, status)
      return answer_500(h)
    end
    local s, hs, b = normalize(status, headers, body)
    if not s then
      counters.errors = counters.errors + 1
      log.error("http: bad answer from the handler of %s %s: %s", req.method, req.path, hs)
      return answer_500(h)
    end
    local rok, rerr = pcall(h.respond, h, s, hs, b)
    if not rok then
      counters.errors = counters.errors + 1
      log.error("http: bad answer from the handler of %s %s: %s", req.method, req.path, rerr)
      return answer_500(h)
    end
    -- respond() -> nil, "closed" when the client left: nothing to do.
  end
end

local Server = {}
Server.__index = Server

-- listen(opts, handler) -> srv | nil, err
-- Bad option types raise (caller bugs); failing to listen is a value.
function M.listen(opts, handler)
  opts = opts or {}
  if type(opts) ~= "table" then error("listen: opts must be a table", 2) end
  if type(handler) ~= "function" then error("listen: handler must be a function", 2) end
  local counters = { errors = 0, timeouts = 0 }
  local s, err = native.http_listen(opts, make_runner(handler, counters))
  if not s then return nil, err end
  return setmetatable({
    port = s:port(),
    host = opts.host or "127.0.0.1",
    _native = s,
    _counters = counters,
  }, Server)
end

-- srv:close({grace_ms = 10000, wait = true}) -> true | nil, reason
-- Stops accepting, lets in-flight requests finish (for at most grace_ms;
-- then they get 503), asks WebSockets to close (1001), and, with wait (the
-- default inside a task), waits until every connection is gone. Do not
-- wait from one of this server's own handlers: it would wait for itself
-- until the grace ends; pass wait = false there.
function Server:close(opts)
  opts = opts or {}
  self._native:close(opts.grace_ms or 10000)
  if opts.wait == false or native.current() == nil then return true end
  return self._native:wait_closed()
end

-- srv:wait_closed() -> true | nil, reason
function Server:wait_closed()
  return self._native:wait_closed()
end

function Server:is_closed()
  return self._native:is_closed()
end

-- srv:stats() -> {requests, requests_active, connections_total,
--   connections_active, connections_rejected, websockets_total,
--   websockets_active, bytes_in, bytes_out, handler_errors,
--   handler_timeouts}
function Server:stats()
  local st = self._native:stats()
  st.handler_errors = self._counters.errors
  st.handler_timeouts = self._counters.timeouts
  return st
end

return M
