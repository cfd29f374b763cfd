-- chorus.api.ws: the WebSocket endpoints.
--
--   /ws/execute/{config}       send {"input": {...}} as the first message
--                              (callback_url, session_id, metadata as on
--                              REST); receive every event, then the result
--     also at /api/v1/orchestrations/ws/execute/{config} (the plan's path)
--   /ws/executions/{trace_id}  replay the execution's past events, then the
--                              live ones, then the final result
--   /ws/events                 every event of every execution (admins)
--
-- Authentication as for REST (Authorization: Bearer KEY), or ?api_key=KEY
-- (?token=KEY, the plan's name) for browsers, which cannot set headers on
-- a WebSocket. Messages from the server are JSON: events {"type":
-- "execution.status" | "step.status" | ..., "seq": n, "at": RFC 3339,
-- ...}, then {"type": "result", "execution": record}, or {"type":
-- "error", "error": {"code", "message"}} before a close.
--
-- /ws/executions/{trace_id} and /ws/events also answer a plain GET with
-- Accept: text/event-stream, with the same messages as server-sent events
-- (chorus.api.event_stream): for curl, EventSource and `chorus events`.
--
-- A slow consumer never makes the server buffer without bound: events
-- wait in a queue of at most max_queue per client; when it overflows (or
-- the socket's own send buffer is full) the client gets an error notice
-- {"code": "slow_consumer"} and is disconnected (close code 1008).
local json = require "chorus.json"
local sched = require "chorus.sched"
local native = require "chorus.native"
local api = require "chorus.api"
local errors = require "chorus.api.errors"
local event_stream = require "chorus.api.event_stream"
local present = require "chorus.api.present"
local rfc3339 = require "chorus.rfc3339"

local M = {}

M.defaults = { max_queue = 1000, first_message_timeout_ms = 30000,
  -- While history is replayed, a socket whose buffer is full is waited
  -- for (down to drain_bytes) rather than dropped as a slow consumer,
  -- unless it does not drain for replay_stall_ms.
  drain_bytes = 256 * 1024, replay_stall_ms = 10000,
  -- With PostgreSQL, another node may run the execution and Redis may
  -- miss its end: a follower checks the record this often.
  end_poll_ms = 2000 }

local TERMINAL = require("chorus.engine.states").execution_terminal

-- Messages go to a WebSocket encoded straight into their frame
-- (ws:send_json: never a Lua string, which LuaJIT would intern and
-- compare with its look-alikes: a stream's events are alike and of one
-- length), an engine event's time in the API's form; an event going to
-- many subscribers in turn is encoded once (the key names the last
-- value sent: the C side sends its text again). An event stream
-- (chorus.api.event_stream, which has no send_json), and what that
-- encoder leaves to cjson, go the long way.
local last_sent, last_key = nil, 0

local function send_json(ws, v)
  local at = v.at
  if ws.send_json and (at == nil or type(at) == "number") then
    if v ~= last_sent then last_sent, last_key = v, last_key + 1 end
    local ok, why = ws:send_json(v, at and rfc3339.format(at), last_key)
    if ok or why ~= "unencodable" then return ok, why end
  end
  local s, err = json.encode(at ~= nil and present.event(v) or v)
  if not s then -- a record stored before the limits: its good parts go
    require("chorus.log").warn("ws: a %s message has a part that cannot be encoded: %s", tostring(v.type), tostring(err))
    s = json.encode_lenient(v)
  end
  return ws:send(s)
end

-- The final result of an execution, built and encoded once for all its
-- subscribers (the last few executions are remembered).
local results, result_order = {}, {}
local function result_message(svc, trace, scope)
  local msg = results[trace]
  if msg then return msg end
  local rec = svc.store:get_record(trace, scope)
  msg = { type = "result", execution = rec and present.execution(rec) or json.null }
  if rec and TERMINAL[rec.status] then
    results[trace] = msg
    result_order[#result_order + 1] = trace
    if #result_order > 200 then results[table.remove(result_order, 1)] = nil end
  end
  return msg
end

-- The error notice goes the plain way (no fast encoder): it may be what
-- tells the client that sending failed.
local function fail(ws, code, message, close_code)
  ws:send(json.encode({ type = "error", error = { code = code, message = message } }))
  ws:close(close_code or 1008)
end

-- A client. Live events are sent straight from the hub's callback (the
-- emitting task): ws:send only queues and never yields, and waking one
-- task per subscriber per event cost more than the sends themselves.
-- Events that arrive while the history is being replayed wait in a
-- bounded queue. The handler's task only waits for the end: the
-- execution finished, the client left, or it fell behind.
local function client(ws, max_queue)
  return { ws = ws, queue = {}, cond = sched.cond(), max = max_queue, last = -1, live = false }
end

local function wake(c)
  if c.cond:has_waiters() then c.cond:signal(true) end
end

-- drained(c) -> true once the socket's queue is down to drain_bytes
-- (replay: a fast reader of a long history is waited for, not dropped).
local function drained(c)
  local t0 = sched.now()
  while c.ws:queued() > M.defaults.drain_bytes do
    if not c.ws:is_open() then return false end
    if sched.now() - t0 > M.defaults.replay_stall_ms or not sched.sleep(5) then return false end
  end
  return true
end

-- send_event(c, e, replaying): sends e unless it is a duplicate (by seq).
local function send_event(c, e, replaying)
  if e.seq then
    if e.seq <= c.last then return end
    c.last = e.seq
  end
  local ok, why = send_json(c.ws, e)
  while not ok and why == "backpressure" and replaying and drained(c) do
    ok, why = send_json(c.ws, e)
  end
  if not ok then
    if why == "backpressure" then c.overflow = true else c.closed = true end
    return wake(c)
  end
  if c.terminal_ends and e.type == "execution.status" and TERMINAL[e.status] then
    c.finished = true
    wake(c)
  end
end

local function deliver(c, e)
  if c.closed or c.overflow or c.finished then return end
  if c.live then return send_event(c, e) end
  if #c.queue >= c.max then
    c.overflow = true
    return wake(c)
  end
  c.queue[#c.queue + 1] = e
end

-- subscriber(c): the hub's callback for client c. Should sending raise (a
-- defect), the client is told and closed rather than left waiting for
-- events that will not come; the hub logs the error and drops it.
local function subscriber(c)
  return function(e)
    local ok, err = pcall(deliver, c, e)
    if not ok then
      c.broken = true
      wake(c)
      error(err, 0)
    end
  end
end

-- serve(c): waits until the client is done with; a reader notices it
-- going away. Returns when finished, closed or overflowing.
local function serve(c)
  local reader = sched.spawn(function()
    while true do
      local msg, why = c.ws:receive()
      if not msg and why ~= "timeout" then
        c.closed = true
        return wake(c)
      end
    end
  end)
  while not (c.finished or c.closed or c.overflow or c.broken) do
    if not c.cond:wait() then break end
  end
  reader:cancel()
  if c.broken then
    fail(c.ws, "internal", "the server failed to send this execution's events; its log says why", 1011)
  elseif c.overflow then
    fail(c.ws, "slow_consumer", "the client does not read fast enough; events were dropped", 1008)
  end
end

-- poll_end: another node runs the execution, and Redis carries its
-- events; if Redis is down as it ends, the end never comes that way. The
-- record in the shared store says it anyway.
local function poll_end(svc, c, trace, scope)
  while not (c.finished or c.closed or c.overflow) do
    if not sched.sleep(M.defaults.end_poll_ms) then return end
    local rec = svc.store:get_record(trace, scope)
    if rec and TERMINAL[rec.status] then
      c.finished = true
      return wake(c)
    end
  end
end

-- stream(service, c, trace, scope): replay then live events until the
-- execution ends (result sent) or the client goes away.
local function stream(svc, c, trace, scope)
  local hub = svc.hub
  c.terminal_ends = true
  local token = hub:subscribe(trace, subscriber(c))
  -- Replay: this node's history, else the cluster's (Redis stream).
  local past = hub:history(trace)
  if not past and svc.bridge then past = svc.bridge:history(trace) end
  if past then
    local sorted = {}
    for i, e in ipairs(past) do sorted[i] = e end
    table.sort(sorted, function(a, b) return (a.seq or 0) < (b.seq or 0) end)
    for _, e in ipairs(sorted) do
      send_event(c, e, true)
      if c.closed or c.overflow then break end
    end
  end
  -- What came during the replay, then live.
  for _, e in ipairs(c.queue) do send_event(c, e, true) end
  c.live = true
  c.queue = {}
  if not c.finished then
    local rec = svc.store:get_record(trace, scope)
    if rec and TERMINAL[rec.status] then c.finished = true end
  end
  local poller
  if svc.store.kind == "pg" and not c.finished then
    poller = sched.spawn(poll_end, svc, c, trace, scope)
  end
  serve(c)
  if poller then poller:cancel() end
  hub:unsubscribe(token)
  if c.finished and not c.closed and not c.overflow and not c.broken then
    send_json(c.ws, result_message(svc, trace, scope))
    c.ws:close(1000)
  end
end

-- upgrade(ctx, sse) -> client | nil, error response: the WebSocket, or
-- with sse, for a plain GET asking for text/event-stream, an event stream
-- with the socket's methods (req.event_stream is then set: the metrics
-- and the access log count it as the 200 it is).
local function upgrade(ctx, sse)
  local req = ctx.req
  local ws, werr
  if not req.is_websocket and sse and event_stream.wants(req) then
    ws, werr = event_stream.open(req)
    req.event_stream = ws ~= nil
  elseif not req.is_websocket then
    return nil, errors.response("bad_request", sse
      and "this endpoint needs a WebSocket upgrade, or Accept: text/event-stream for server-sent events"
      or "this endpoint needs a WebSocket upgrade (the input is its first message)")
  else
    ws, werr = req:websocket()
  end
  if not ws then
    return nil, errors.response("bad_request", "expected a WebSocket upgrade: " .. tostring(werr))
  end
  return client(ws, ctx.service.ws_max_queue or M.defaults.max_queue)
end

-- done(ctx, c) -> 200 for an event stream, whose last messages go out before
-- its body ends (a WebSocket is closed by the server when the handler
-- returns).
local function done(ctx, c)
  if ctx.req.event_stream then
    c.ws:close()
    return 200
  end
end

-- /ws/executions/{trace_id}: replay, then live, then the result.
local function follow(ctx)
  local svc, scope = ctx.service, api.scope(ctx.principal)
  local trace = ctx.params.trace_id
  if not api.is_uuid(trace) then return errors.response("bad_request", "trace_id must be a UUID") end
  trace = trace:lower()
  ctx.req.trace_id = trace
  local rec = svc.store:get_record(trace, scope)
  if not rec then return errors.response("not_found", ("no execution %s"):format(trace)) end
  local c, s, h, b = upgrade(ctx, true)
  if not c then return s, h, b end
  stream(svc, c, trace, scope)
  return done(ctx, c)
end

-- /ws/events: every event of every execution (admins).
local function events(ctx)
  local c, s, h, b = upgrade(ctx, true)
  if not c then return s, h, b end
  c.live = true
  local token = ctx.service.hub:subscribe("*", subscriber(c))
  serve(c)
  ctx.service.hub:unsubscribe(token)
  return done(ctx, c)
end

-- /ws/execute/{config}: the first message carries the input; the
-- execution starts through the same service as REST's execute, then is
-- followed like /ws/executions/{trace_id}.
local function execute(ctx)
  local svc, p = ctx.service, ctx.principal
  local c, s, h, b = upgrade(ctx)
  if not c then return s, h, b end
  local ws = c.ws
  local first, why = ws:receive(M.defaults.first_message_timeout_ms)
  if not first then
    if why == "timeout" then fail(ws, "bad_request", "send {\"input\": {...}} first") end
    return
  end
  -- An object, not an array (even an empty one): "[]" decodes to a table too.
  local doc = native.utf8_valid(first) and first:match("^%s*{") and json.decode(first)
  if type(doc) ~= "table" or (next(doc) ~= nil and json.is_array(doc)) then
    return fail(ws, "invalid_json", "the first message must be a JSON object like {\"input\": {...}}")
  end
  local _, bad = native.value_check(doc, math.huge, json.MAX_DEPTH)
  if bad and bad > 0 then
    return fail(ws, "invalid_json", "the first message holds a NUL character (\\u0000), which text may not contain")
  end
  local input = doc.input
  if input == nil or input == json.null then input = {} end
  if type(input) ~= "table" or (next(input) ~= nil and json.is_array(input)) then
    return fail(ws, "validation_failed", "input must be a JSON object")
  end
  local extras, xerrs = require("chorus.api.executions_routes").read_extras(doc, input)
  if not extras then
    return fail(ws, "validation_failed", xerrs[1].path .. ": " .. xerrs[1].message)
  end
  local trace = native.uuid()
  ctx.req.trace_id = trace
  -- Subscribe before it starts: no event can be missed.
  local early = svc.hub:subscribe(trace, subscriber(c))
  local scope = api.scope(p)
  local res, serr, scode, errs = svc.front:execute(ctx.params.config, input,
    { trace_id = trace, user_id = p.user_id, tenant_id = p.tenant_id, callback_url = extras.callback_url,
      session_id = extras.session_id, metadata = extras.metadata }, scope)
  if not res then
    svc.hub:unsubscribe(early)
    local code = errors.SUBMIT_CODES[scode]
    if not code then return fail(ws, "unavailable", "cannot start the execution: " .. tostring(serr), 1011) end
    if scode == "invalid_config" and errs then serr = serr .. ": " .. errs[1].path .. ": " .. errs[1].message end
    return fail(ws, code, serr, scode == "busy" and 1013 or 1008)
  end
  send_json(ws, { type = "execution.accepted", trace_id = res.trace_id, execution_id = res.execution_id })
  local r = stream(svc, c, trace, scope)
  svc.hub:unsubscribe(early)
  return r
end

-- register(app): the endpoints are routes of the API's router: the same
-- authentication (a key as a bearer header, or ?api_key= / ?token= which
-- browsers must use), roles, access log and metrics as REST.
function M.register(app)
  app:route("GET", "/ws/execute/{config}", { auth = "execute", websocket = true }, execute)
  app:route("GET", "/api/v1/orchestrations/ws/execute/{config}", { auth = "execute", websocket = true }, execute)
  app:route("GET", "/ws/executions/{trace_id}", { auth = "read", websocket = true }, follow)
  app:route("GET", "/ws/events", { auth = "admin", websocket = true }, events)
end

-- For the unit specs: a client, its hub callback and its wait.
M._client = { new = client, subscriber = subscriber, serve = serve }

return M
