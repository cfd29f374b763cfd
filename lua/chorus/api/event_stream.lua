-- chorus.api.event_stream: the events of /ws/executions/{trace_id} and
-- /ws/events as server-sent events (text/event-stream), for clients that
-- speak plain HTTP: curl, the CLI (`chorus events`), EventSource.
--
--   local s = event_stream.open(req) -> s | nil, err  (sends the head)
--
-- s has the socket methods chorus.api.ws uses, so the same code serves
-- both transports:
--   s:send(text) -> true | nil, "backpressure" | "closed"   never waits;
--       each message is one event, "data: TEXT\n\n" (the JSON has no
--       newline of its own)
--   s:receive() -> nil, "closed" once the client is gone (a stream has
--       nothing to receive: this only waits for the end)
--   s:queued(), s:is_open()
--   s:close([code]) sends what is queued (for up to close_ms) and ends
--     the body; close(1008) (a slow consumer) cuts it at once
--   close_all() ends every open stream after what it has queued, at once
--     (a server shutting down: its followers open them again elsewhere,
--     as WebSocket clients do on the close 1001 they get)
-- A writer task moves queued messages to the response; when the stream
-- has been idle for keepalive_ms it writes a comment line, which keeps
-- proxies from timing it out and finds out that a client went away.
local sched = require "chorus.sched"

local M = {}

-- The streams open in this process (weak: a finished one goes).
local open_streams = setmetatable({}, { __mode = "k" })

M.defaults = {
  max_queued = 1024 * 1024, -- as a WebSocket's: past it the client is a slow consumer
  keepalive_ms = 15000,
  close_ms = 5000,
}

local Stream = {}
Stream.__index = Stream

M.HEADERS = { ["content-type"] = "text/event-stream; charset=utf-8", ["cache-control"] = "no-cache",
  ["x-accel-buffering"] = "no" }

-- wants(req) -> true when the request asks for an event stream
function M.wants(req)
  local accept = req.headers and req.headers["accept"]
  return req.method == "GET" and type(accept) == "string" and accept:lower():find("text/event-stream", 1, true) ~= nil
end

local function gone(s)
  s.open = false
  open_streams[s] = nil
  s.ended:signal(true)
end

local function writer(s)
  local d = M.defaults
  while true do
    if #s.pending == 0 then
      if s.closing then break end
      sched.with_deadline(d.keepalive_ms, s.wakeup.wait, s.wakeup)
      if sched.cancelled() then return gone(s) end
      if #s.pending == 0 and not s.closing then
        -- Idle: a comment line, which also finds out that the client left.
        s.pending[1] = ": keep-alive\n\n"
        s.pending_bytes = #s.pending[1]
      end
    end
    if #s.pending > 0 then
      local chunk = table.concat(s.pending)
      s.pending, s.pending_bytes = {}, 0
      local ok = s.w:write(chunk)
      if not ok then return gone(s) end
    end
  end
  s.w:close()
  gone(s)
end

function M.open(req)
  local w, err = req:stream(200, M.HEADERS)
  if not w then return nil, err end
  -- A first comment line at once: the response's head goes out with the
  -- first bytes of its body, and a client waits for the head (curl -N,
  -- the CLI) before anything happens to follow.
  local hello = ": chorus events\n\n"
  local s = setmetatable({ w = w, pending = { hello }, pending_bytes = #hello, open = true, closing = false,
    wakeup = sched.cond(), ended = sched.cond() }, Stream)
  s.task = sched.spawn(writer, s)
  open_streams[s] = true
  return s
end

-- finish(): the stream ends once what is queued is written; no wait.
function Stream:finish()
  if self.closing then return end
  self.closing = true
  open_streams[self] = nil
  if self.wakeup:has_waiters() then self.wakeup:signal(true) end
end

function M.close_all()
  local all = {}
  for s in pairs(open_streams) do all[#all + 1] = s end
  for _, s in ipairs(all) do s:finish() end
end

function Stream:send(text)
  if not self.open or self.closing then return nil, "closed" end
  local frame = "data: " .. text:gsub("\r?\n", "\ndata: ") .. "\n\n"
  if self:queued() + #frame > M.defaults.max_queued then return nil, "backpressure" end
  self.pending[#self.pending + 1] = frame
  self.pending_bytes = self.pending_bytes + #frame
  if self.wakeup:has_waiters() then self.wakeup:signal(true) end
  return true
end

function Stream:receive()
  while self.open do
    local ok, why = self.ended:wait()
    if not ok then return nil, why end
  end
  return nil, "closed"
end

function Stream:queued()
  return self.pending_bytes + self.w:queued()
end

function Stream:is_open()
  return self.open and not self.closing
end

-- close([code]): the queued messages go out, then the body ends. Waits
-- for the writer (a while at most: a client that stopped reading is cut).
-- code 1008 (a slow consumer, as its WebSocket would be closed) cuts the
-- body at once: the client sees it incomplete and knows it lost events.
function Stream:close(code)
  if code == 1008 and not self.joined then
    self.joined, self.closing = true, true
    open_streams[self] = nil
    self.task:cancel()
    self.w:abort()
    return
  end
  self:finish()
  if self.open and not self.joined then
    self.joined = true
    local ok = sched.with_deadline(M.defaults.close_ms, self.task.join, self.task)
    if not ok then
      self.task:cancel()
      self.w:abort()
    end
  end
end

return M
