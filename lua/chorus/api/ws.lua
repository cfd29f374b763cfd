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
-- or ?token=KEY (the plan's name) for browsers, which cannot set headers
-- on a WebSocket. Messages from the server are JSON: events {"type":
-- "execution.status" | "step.status" | ..., "seq": n, "at": RFC 3339, ...},
-- then {"type": "result", "execution": record}, or {"type": "error",
-- "error": {"code", "message"}} before a close.
--
-- A slow consumer never makes the server buffer without bound: events
-- wait in a queue of at most max_queue per client; when it overflows (or
-- the socket's own send buffer is full) the client gets an error notice
-- {"code": "slow_consumer"} and is disconnected (close code 1008).
local json = require "chorus.json"
local sched = require "chorus.sched"
local native = require "chorus.native"
local router = require "chorus.api.router"
local api = require "chorus.api"
local present = require "chorus.api.present"
local auth_mod = require "chorus.api.auth"
-- One list of the endpoints' templates, shared with the metrics.
local ws_route = require("chorus.metrics.http").ws_route

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

-- An event goes to many subscribers: it is encoded once (the cache is
-- keyed by the event table, weakly, so it goes with the event).
local encoded = setmetatable({}, { __mode = "k" })

local function send_json(ws, v)
  local s = encoded[v]
  if not s then
    local err
    -- An engine event's time in the API's form (a copy: the event is shared).
    s, err = json.encode(v.at ~= nil and present.event(v) or v)
    if not s then -- a record stored before the limits: its good parts go
      require("chorus.log").warn("ws: a %s message has a part that cannot be encoded: %s", tostring(v.type), tostring(err))
      s = json.encode_lenient(v)
    end
    encoded[v] = s
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

local function fail(ws, code, message, close_code)
  send_json(ws, { type = "error", error = { code = code, message = message } })
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
  while not (c.finished or c.closed or c.overflow) do
    if not c.cond:wait() then break end
  end
  reader:cancel()
  if c.overflow then
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
  local token = hub:subscribe(trace, function(e) deliver(c, e) end)
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
  if c.finished and not c.closed and not c.overflow then
    send_json(c.ws, result_message(svc, trace, scope))
    c.ws:close(1000)
  end
end

local function principal(svc, req)
  local header = req.headers["authorization"]
  if not header then
    local q = router.parse_query(req.query) or {}
    local key = q.api_key or q.token
    if key then header = "Bearer " .. key end
  end
  return svc.auth:authenticate(header)
end

-- The plan's path of the execute endpoint.
local PLAN_EXECUTE = "^/api/v1/orchestrations/ws/(execute)/([^/]+)$"

-- handles(path) -> true for a path this module serves (the server sends
-- those here, upgrade or not: a plain GET gets the JSON error).
function M.handles(path)
  return path:sub(1, 4) == "/ws/" or path:find("^/api/v1/orchestrations/ws/") ~= nil
end

-- handle(service, req) -> status, headers, body (when it refuses before
-- the upgrade) or nothing (the socket was served). Like the REST API's
-- handle it leaves req.route, req.principal and req.trace_id.
function M.handle(svc, req)
  local kind, arg = req.path:match("^/ws/(execute)/([^/]+)$")
  if not kind then kind, arg = req.path:match(PLAN_EXECUTE) end
  if not kind then kind, arg = req.path:match("^/ws/(executions)/([^/]+)$") end
  if not kind and req.path == "/ws/events" then kind = "events" end
  if not kind then return require("chorus.api.errors").response("not_found", "no WebSocket endpoint " .. req.path) end
  req.route = ws_route(req.path) -- the endpoint's template (access log)
  local errors = require "chorus.api.errors"
  local p, code, msg = principal(svc, req)
  if not p then return errors.response(code, msg) end
  req.principal = p
  local need = kind == "execute" and "execute" or kind == "events" and "admin" or "read"
  if not auth_mod.can(p, need) then return errors.response("forbidden", ("the %s role cannot %s"):format(p.role, need)) end
  arg = arg and router.unescape(arg)
  local scope = api.scope(p)
  if kind == "executions" then
    if not api.is_uuid(arg) then return errors.response("bad_request", "trace_id must be a UUID") end
    arg = arg:lower()
    req.trace_id = arg
    local rec = svc.store:get_record(arg, scope)
    if not rec then return errors.response("not_found", ("no execution %s"):format(arg)) end
  end
  local ws, werr = req:websocket()
  if not ws then return errors.response("bad_request", "this is a WebSocket endpoint: " .. tostring(werr)) end
  local c = client(ws, svc.ws_max_queue or M.defaults.max_queue)

  if kind == "executions" then
    return stream(svc, c, arg, scope)
  end

  if kind == "events" then
    c.live = true
    local token = svc.hub:subscribe("*", function(e) deliver(c, e) end)
    serve(c)
    svc.hub:unsubscribe(token)
    return
  end

  -- execute: the first message carries the input.
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
  local cfg_rec = svc.store:get_config(arg, scope)
  if not cfg_rec then return fail(ws, "not_found", ("no config '%s'"):format(arg)) end
  if not cfg_rec.is_active then
    return fail(ws, "invalid_state", ("config '%s' is not active"):format(cfg_rec.name))
  end
  local cfg, errs = svc.engine:validate({ name = cfg_rec.name, description = cfg_rec.description,
    strategy = cfg_rec.strategy, steps = cfg_rec.steps, metadata = cfg_rec.metadata })
  if not cfg then
    return fail(ws, "validation_failed", "the stored config is no longer valid: " .. errs[1].path .. ": " .. errs[1].message)
  end
  local trace = native.uuid()
  req.trace_id = trace
  -- Subscribe before it starts: no event can be missed.
  local early = svc.hub:subscribe(trace, function(e) deliver(c, e) end)
  local res, serr, scode = svc.runner:submit(cfg, input, { trace_id = trace, config_id = cfg_rec.id,
    config_version = cfg_rec.version, user_id = p.user_id, tenant_id = p.tenant_id,
    callback_url = extras.callback_url, session_id = extras.session_id, metadata = extras.metadata })
  if not res then
    svc.hub:unsubscribe(early)
    if scode == "invalid_input" then return fail(ws, "validation_failed", serr) end
    if scode == "busy" then return fail(ws, "too_many_requests", serr, 1013) end
    return fail(ws, "unavailable", "cannot start the execution: " .. tostring(serr), 1011)
  end
  send_json(ws, { type = "execution.accepted", trace_id = res.trace_id, execution_id = res.execution_id })
  local r = stream(svc, c, trace, scope)
  svc.hub:unsubscribe(early)
  return r
end

return M
