-- chorus.db.redis: Redis from tasks (hiredis on the loop): commands, pipelines,
-- transactions, pub/sub, and reconnection in the background.
--
--   redis.connect(url, opts) -> client | nil, err
--   client:call(name, arg...)        -> reply | nil, err [, "redis"]
--   client:command(name, arg...)     the same; also client:command({name, arg...})
--   client:pipeline({{name, arg...}, ...}) -> {reply...} | nil, err
--   client:transaction({{name, arg...}, ...}) -> {result...} | nil, err [, "redis"]
--   client:connected() -> boolean;  client:stats() -> table;  client:close()
--
--   redis.subscriber(url, opts) -> sub | nil, err
--   sub:subscribe(channel...) / sub:psubscribe(pattern...) -> true | nil, err
--   sub:unsubscribe(channel...) / sub:punsubscribe(pattern...) -> true | nil, err
--   sub:next_message(timeout_ms) -> {channel=, payload=, pattern=} | nil, why
--   sub:on_message(fn, {concurrency=, on_state=}) -> true
--   sub:connected(), sub:stats(), sub:close()
--
-- url: redis://[user[:password]@]host[:port][/db] (IPv6 hosts in brackets)
-- or unix:///path/to/redis.sock[?db=N]. opts (defaults in redis.defaults):
-- connect_timeout_ms, command_timeout_ms (0: none), reconnect,
-- backoff_min_ms, backoff_max_ms, max_queue (subscriber), and any of
-- host, port, db, user, password, path to override the url.
--
-- Replies: status and bulk replies are strings (binary safe), integers are
-- numbers (a decimal string beyond 2^53), arrays are Lua arrays (nested),
-- and a nil reply (GET of a missing key, a BLPOP that timed out) is
-- redis.null, the same value as json.null (a lightuserdata: it is TRUTHY,
-- compare with `== redis.null`). An error reply is `nil, "ERR ...",
-- "redis"`; inside an array or a pipeline's results it is {err = "ERR ..."}.
--
-- Failures are `nil, word`: "closed" (the connection closed or was lost
-- while the command was pending, or the client was closed), "disconnected"
-- (issued while reconnecting: commands fail fast, they never wait for the
-- server to come back), "timeout" (command_timeout_ms, or the task's
-- deadline), "cancelled" (the waiting task was cancelled: a late reply is
-- discarded), or connect errors ("connection refused", "cannot resolve:
-- ...", "timeout", "connect failed: " and the server's AUTH error ...).
-- Calling outside a task, bad argument types, and commands that would
-- change the shared connection's state for every task (SUBSCRIBE, SELECT,
-- MONITOR, MULTI/EXEC/WATCH outside transaction()) raise: those are bugs.
--
-- Concurrency: many tasks may use one client at once; hiredis queues the
-- commands and the replies come back in order. Blocking commands (BLPOP,
-- BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, WAIT ...) run on a connection
-- of their own taken from a small idle pool, because a blocked connection
-- delays every command behind it; they are not subject to
-- command_timeout_ms (they carry their own timeout), and cancelling one
-- closes its connection, so the client stays usable.
--
-- Reconnection: a client or subscriber whose connection is lost (or whose
-- attempt fails) tries again after 100 ms, doubling up to 5 s. Only the
-- first connect reports its failure to redis.connect. A subscriber
-- subscribes again to all its channels and patterns before it counts as
-- connected; messages published while it was down are lost (stats().
-- reconnects says it happened, on_state is told). A subscriber buffers at
-- most max_queue messages not yet taken; beyond that the oldest are
-- dropped and counted (stats().drops).
local native = require "chorus.native"
local json = require "chorus.json"
local sched = require "chorus.sched"
local log = require "chorus.log"

local open, command, pipeline = native.redis_open, native.redis_command, native.redis_pipeline
local subscribe, unsubscribe = native.redis_subscribe, native.redis_unsubscribe
local next_native, close_native, info = native.redis_next, native.redis_close, native.redis_info
local type, tonumber, tostring, pairs, ipairs, select, error = type, tonumber, tostring, pairs, ipairs, select, error
local setmetatable, unpack = setmetatable, unpack
local upper, lower, char = string.upper, string.lower, string.char
local remove = table.remove

local M = { null = json.null }

-- Defaults for options left out.
M.defaults = {
  connect_timeout_ms = 5000,  -- per attempt, handshake included
  command_timeout_ms = 5000,  -- per command; 0: none
  reconnect = true,
  backoff_min_ms = 100,
  backoff_max_ms = 5000,
  max_queue = 10000,          -- subscriber: messages kept before dropping
  concurrency = 64,           -- on_message: handlers running at once
  max_idle_blocking = 2,      -- idle connections kept for blocking commands
}

-- Commands that block the connection they run on.
local BLOCKING = {
  BLPOP = true, BRPOP = true, BRPOPLPUSH = true, BLMOVE = true, BLMPOP = true,
  BZPOPMIN = true, BZPOPMAX = true, BZMPOP = true, WAIT = true, WAITAOF = true,
}
-- Commands that only make sense on a connection of one's own: a shared
-- client interleaves every task's commands.
local TX = { MULTI = true, EXEC = true, DISCARD = true, WATCH = true, UNWATCH = true }

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function bad_url(why)
  return nil, "bad url: " .. why
end

-- parse_url(url) -> {host=, port=, db=, user=, password=, path=} | nil, err
function M.parse_url(url)
  if type(url) ~= "string" then return bad_url("expected a string, got " .. type(url)) end
  local scheme, rest = url:match("^(%a[%w+.%-]*)://(.*)$")
  if not scheme then return bad_url("no scheme in '" .. url .. "'") end
  scheme = lower(scheme)
  local query
  rest, query = rest:match("^([^?#]*)%??([^#]*)")
  local cfg, userinfo = {}, nil
  local at = rest:find("@[^@]*$")
  if at then userinfo, rest = rest:sub(1, at - 1), rest:sub(at + 1) end
  if userinfo then
    local u, p = userinfo:match("^([^:]*):(.*)$")
    if u then
      cfg.user = u ~= "" and unescape(u) or nil
      cfg.password = unescape(p)
    else
      cfg.user = userinfo ~= "" and unescape(userinfo) or nil
    end
  end
  if scheme == "unix" or scheme == "redis+unix" then
    if rest:sub(1, 1) ~= "/" then return bad_url("no socket path in '" .. url .. "'") end
    cfg.path = unescape(rest)
  elseif scheme == "redis" then
    local hostport, path = rest:match("^([^/]*)(.*)$")
    local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
    if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
    if not host or host == "" then return bad_url("no host in '" .. url .. "'") end
    cfg.host = host
    cfg.port = tonumber(port) or 6379
    if cfg.port < 1 or cfg.port > 65535 then return bad_url("port out of range") end
    local db = path:match("^/(%d+)/?$")
    if db then cfg.db = tonumber(db)
    elseif path ~= "" and path ~= "/" then return bad_url("the path must be a db number, got '" .. path .. "'") end
  elseif scheme == "rediss" then
    return bad_url("TLS (rediss://) is not supported: hiredis 0.14 has no TLS")
  else
    return bad_url("scheme must be redis or unix, got '" .. scheme .. "'")
  end
  for k, v in (query or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == "db" then
      cfg.db = tonumber(v)
      if not cfg.db then return bad_url("db must be a number") end
    end
  end
  return cfg
end

-- Native options from the url, the defaults and opts.
local function native_opts(url, opts, subscriber)
  if opts ~= nil and type(opts) ~= "table" then error("redis: opts must be a table", 3) end
  opts = opts or {}
  local cfg, err = M.parse_url(url)
  if not cfg then return nil, err end
  local o = {}
  for _, k in ipairs({ "connect_timeout_ms", "command_timeout_ms", "reconnect",
                       "backoff_min_ms", "backoff_max_ms", "max_queue" }) do
    local v = opts[k]
    if v == nil then v = M.defaults[k] end
    o[k] = v
  end
  for _, k in ipairs({ "host", "port", "db", "user", "password", "path" }) do
    local v = opts[k]
    if v == nil then v = cfg[k] end
    o[k] = v
  end
  if o.path then o.host = nil end
  o.subscriber = subscriber or nil
  return o
end

---------------------------------------------------------------- client --

local Client = {}
Client.__index = Client
M.Client = Client

-- connect(url, opts) -> client | nil, err. Yields until the first attempt
-- ends; a client that was connected once reconnects by itself.
function M.connect(url, opts)
  local o, err = native_opts(url, opts, false)
  if not o then return nil, err end
  local h
  h, err = open(o)
  if not h then return nil, err end
  -- Blocking commands: own connections, no reconnect, no command timeout.
  local bo = {}
  for k, v in pairs(o) do bo[k] = v end
  bo.reconnect, bo.command_timeout_ms = false, 0
  return setmetatable({
    h = h, url = url, block_opts = bo, idle = {}, busy = {}, closed = false,
    max_idle = (opts and opts.max_idle_blocking) or M.defaults.max_idle_blocking,
  }, Client)
end

local function is_blocking(name, ...)
  if BLOCKING[name] then return true end
  if name == "XREAD" or name == "XREADGROUP" then
    for i = 1, select("#", ...) do
      local a = select(i, ...)
      if type(a) == "string" and upper(a) == "BLOCK" then return true end
    end
  end
  return false
end

local function check_name(name, level)
  if type(name) ~= "string" then error("redis: the command name must be a string", level + 1) end
  local up = upper(name)
  if TX[up] then
    error("redis: " .. up .. " on a shared client would mix every task's commands; "
      .. "use client:transaction()", level + 1)
  end
  return up
end

-- Runs a blocking command on a connection of its own.
local function blocking_call(self, ...)
  if self.closed then return nil, "closed" end
  if not info(self.h).connected then return nil, "disconnected" end
  local h = remove(self.idle)
  -- Idle connections do not reconnect: drop those the server lost.
  while h and not info(h).connected do
    close_native(h)
    h = remove(self.idle)
  end
  if not h then
    local err
    h, err = open(self.block_opts)
    if not h then return nil, err end
    if self.closed then close_native(h) return nil, "closed" end
  end
  self.busy[h] = true
  local res, err, kind = command(h, ...)
  self.busy[h] = nil
  -- A connection whose command did not complete may still be blocked.
  if (res ~= nil or kind == "redis") and not self.closed and #self.idle < self.max_idle then
    self.idle[#self.idle + 1] = h
  else
    close_native(h)
  end
  return res, err, kind
end

-- client:call(name, arg...) -> reply | nil, err [, "redis"]
function Client:call(name, ...)
  local up = check_name(name, 2)
  if is_blocking(up, ...) then return blocking_call(self, name, ...) end
  return command(self.h, name, ...)
end

-- client:command(name, arg...) or client:command({name, arg...})
function Client:command(first, ...)
  if type(first) == "table" then
    return self:call(unpack(first, 1, first.n or #first))
  end
  return self:call(first, ...)
end

-- client:pipeline(cmds) -> replies | nil, err. Sends every command before
-- reading the first reply; error replies are {err = "..."} in the results.
function Client:pipeline(cmds, tx)
  if type(cmds) ~= "table" then error("redis: pipeline expects an array of commands", 2) end
  if not tx then
    for i, c in ipairs(cmds) do
      if type(c) ~= "table" then error("redis: pipeline command " .. i .. " must be an array", 2) end
      local up = check_name(c[1], 2)
      if is_blocking(up, unpack(c, 2, #c)) then
        error("redis: blocking command " .. up .. " in a pipeline", 2)
      end
    end
  end
  return pipeline(self.h, cmds)
end

-- client:transaction(cmds) -> results | nil, err [, "redis"]. MULTI, the
-- commands and EXEC go out back to back, so no other task's command can
-- slip in. A command refused when queued aborts the whole transaction
-- (nil, "EXECABORT ...", "redis"); a command failing when run is
-- {err = "..."} in the results, as Redis does not roll back.
function Client:transaction(cmds)
  if type(cmds) ~= "table" then error("redis: transaction expects an array of commands", 2) end
  local p = { { "MULTI" } }
  for i, c in ipairs(cmds) do
    if type(c) ~= "table" then error("redis: transaction command " .. i .. " must be an array", 2) end
    local up = check_name(c[1], 2)
    if is_blocking(up, unpack(c, 2, #c)) then
      error("redis: blocking command " .. up .. " in a transaction", 2)
    end
    p[i + 1] = c
  end
  p[#p + 1] = { "EXEC" }
  local res, err = self:pipeline(p, true)
  if not res then return nil, err end
  local exec = res[#res]
  if type(exec) == "table" and exec.err then return nil, exec.err, "redis" end
  if type(res[1]) == "table" and res[1].err then return nil, res[1].err, "redis" end
  return exec
end

function Client:connected()
  return info(self.h).connected
end

-- stats() -> {state=, connected=, last_error=, connects=, reconnects=,
-- errors=, timeouts=, pending=, blocking=} (numbers count since connect)
function Client:stats()
  local s = info(self.h)
  local n = 0
  for _ in pairs(self.busy) do n = n + 1 end
  s.blocking = n
  return s
end

-- close(): pending commands (blocking ones included) get nil, "closed".
function Client:close()
  self.closed = true
  close_native(self.h)
  for _, h in ipairs(self.idle) do close_native(h) end
  self.idle = {}
  for h in pairs(self.busy) do close_native(h) end
end

------------------------------------------------------------ subscriber --

local Sub = {}
Sub.__index = Sub
M.Subscriber = Sub

-- subscriber(url, opts) -> sub | nil, err. A connection of its own in
-- pub/sub mode (Redis takes no other command on it).
function M.subscriber(url, opts)
  local o, err = native_opts(url, opts, true)
  if not o then return nil, err end
  local h
  h, err = open(o)
  if not h then return nil, err end
  return setmetatable({ h = h, url = url }, Sub)
end

-- subscribe(channel...) -> true once the server confirmed them. When the
-- connection is down: nil, "disconnected", and the channels are
-- subscribed as soon as it is back (they are remembered either way).
function Sub:subscribe(...)
  return subscribe(self.h, false, ...)
end

function Sub:psubscribe(...)
  return subscribe(self.h, true, ...)
end

-- unsubscribe(channel...) -> true. No message of these is delivered
-- afterwards (messages already queued still are).
function Sub:unsubscribe(...)
  return unsubscribe(self.h, false, ...)
end

function Sub:punsubscribe(...)
  return unsubscribe(self.h, true, ...)
end

-- next_message(timeout_ms) -> msg | nil, "timeout" | "closed" | "busy" |
-- "cancelled". timeout_ms nil: wait forever; 0: only what is queued.
function Sub:next_message(timeout_ms)
  if self.pump then error("redis: this subscriber delivers to its on_message handler", 2) end
  return next_native(self.h, timeout_ms, false)
end

-- Logs a finished handler's failure.
local function reap(t)
  local ok, err = t:result()
  if not ok and err ~= "cancelled" then
    log.error("redis subscriber: handler failed: %s", tostring(err))
  end
end

local function pump(self, fn, limit, on_state)
  local h, running = self.h, {}
  while true do
    local j = 1
    for i = 1, #running do
      local t = running[i]
      running[i] = nil
      if t:done() then reap(t) else running[j] = t; j = j + 1 end
    end
    if #running >= limit then
      if not sched.wait_any(running) then break end
    else
      local m, why = next_native(h, nil, on_state ~= nil)
      if m then
        running[#running + 1] = sched.spawn(fn, m)
      elseif why == "connected" or why == "disconnected" then
        running[#running + 1] = sched.spawn(on_state, why)
      else
        break -- "closed", or the pump was cancelled
      end
    end
  end
  -- Handlers in flight finish, unless the pump itself was cancelled.
  if #running > 0 and not sched.cancelled() then sched.wait_all(running) end
  for _, t in ipairs(running) do if t:done() then reap(t) end end
end

-- on_message(fn, {concurrency = n, on_state = fn2}) -> true
-- Runs fn(msg) in a new task per message, at most concurrency at once (the
-- rest wait in the bounded queue); on_state("connected"|"disconnected"),
-- if given, runs in a task when the connection is lost or back. A failing
-- handler is logged. The delivering task keeps the subscriber alive until
-- sub:close().
function Sub:on_message(fn, opts)
  if type(fn) ~= "function" then error("redis: on_message expects a function", 2) end
  if self.pump then error("redis: on_message is already set", 2) end
  opts = opts or {}
  local limit = opts.concurrency or M.defaults.concurrency
  if type(limit) ~= "number" or limit < 1 then error("redis: concurrency must be >= 1", 2) end
  if opts.on_state ~= nil and type(opts.on_state) ~= "function" then
    error("redis: on_state must be a function", 2)
  end
  self.pump = sched.spawn_with({ detached = true }, pump, self, fn, limit, opts.on_state)
  return true
end

function Sub:connected()
  return info(self.h).connected
end

-- stats() -> {state=, connected=, last_error=, connects=, reconnects=,
-- errors=, messages=, drops=, queued=, channels=, patterns=}
function Sub:stats()
  return info(self.h)
end

-- close(): next_message and subscribe waits get nil, "closed"; the
-- on_message task ends once its handlers have.
function Sub:close()
  close_native(self.h)
end

return M
