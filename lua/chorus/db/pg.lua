-- chorus.db.pg: PostgreSQL from tasks (libpq on the loop: runtime/rt_pg.c).
--
--   pg.connect(url, {connect_timeout_ms=, cancel_timeout_ms=})
--                                   -> conn | nil, err, info
--   conn:query(sql, ...)            -> res | nil, err, info
--   conn:batch({{sql, p1, ...}, ...}) -> {res, ...} | nil, err, info
--   conn:exec(sql)                  -> {res, ...} | nil, err, info
--   conn:listen(channel) / conn:unlisten(channel) -> true | nil, err, info
--   conn:notify(channel, payload)   -> true | nil, err, info
--   conn:wait_notification(timeout_ms) -> {channel=, payload=, pid=}
--                                   | nil, "timeout" | "closed" | "busy"
--                                         | "cancelled"
--   conn:close(); conn:status(); conn:pid(); conn:transaction_status()
--   pg.pool(url, {size=, connect_timeout_ms=, cancel_timeout_ms=,
--                 backoff_min_ms=, backoff_max_ms=}) -> pool
--   pool:query(sql, ...), pool:batch(list), pool:exec(sql)  (as conn's)
--   pool:with(fn, ...)        -> what fn returns (fn(conn, ...))
--   pool:transaction(fn, ...) -> what fn returns | nil, err, info
--   pool:stats() -> {size=, open=, idle=, waiting=, failures=}
--   pool:close()
--   pg.quote_ident(name) -> '"name"'
--
-- Parameters are $1, $2, ... in the SQL and Lua values after it: nil (or
-- json.null) is SQL NULL (trailing nils count: select('#')), booleans,
-- numbers (integers are sent without exponent), strings, and tables, sent
-- as JSON text. They travel apart from the SQL: metacharacters stay data.
--
-- res = {rows = {row, ...}, columns = {name, ...}, affected = n,
--        command = "SELECT"}: each row maps column name -> value, converted
-- by type: bool -> boolean; int2/int4/int8/oid/float4/float8/numeric ->
-- number (beyond 2^53 precision is lost: cast to text to keep the digits);
-- json/jsonb -> decoded Lua value (a JSON null is json.null); everything
-- else (text, timestamps, uuid, arrays, bytea as \x hex) -> string. A SQL
-- NULL leaves the key out. Duplicate column names: the last one wins in
-- rows (columns lists them all). affected is PQcmdTuples (0 when the
-- command reports no count).
--
-- Errors: err is a message; info.code is the SQLSTATE for server errors
-- (with severity, message, detail, hint, constraint, table, column,
-- schema, datatype, position, where; index = the failing statement of a
-- batch), else a word:
--   "closed"      the connection was lost or closed (info.message says
--                 why). The statement may or may not have run: the caller
--                 decides whether to retry (a pool replaces the connection)
--   "cancelled", "timeout"  the task was cancelled or passed its deadline:
--                 the query is cancelled on the server; err is exactly the
--                 word; the connection stays usable
--   "connection refused", "connect failed", "timeout"  from connect
--                 (connect_timeout_ms)
--   "invalid request"  a NUL byte in the SQL or a parameter
--   "request failed"   a failure without SQLSTATE (libpq's own)
--   "rolled back" pool:transaction rolled back without an error value
--   "out of memory"
-- Bad argument types (not a string for sql, a function as a parameter)
-- raise: they are bugs.
--
-- A batch runs as one pipeline sync segment: one round trip and one
-- implicit transaction. If a statement fails, the whole batch rolls back
-- and nil, err, info (info.index) is returned. Do not put BEGIN/COMMIT in
-- a batch. conn:exec runs a script of several statements without
-- parameters (simple protocol; also one implicit transaction).
--
-- Several tasks may use one connection: their statements run one after
-- another. LISTEN/NOTIFY: notifications that arrive while nobody waits are
-- queued on the connection (up to 10000, oldest dropped). COPY is not
-- supported (the connection is closed).
local native = require "chorus.native"
local json = require "chorus.json"
local sched = require "chorus.sched"

local type, select, ipairs, error, tostring = type, select, ipairs, error, tostring
local setmetatable, unpack, maxn = setmetatable, unpack, table.maxn
local remove, format, floor, min, huge = table.remove, string.format, math.floor, math.min, math.huge
local pg_new, now, sleep = native.pg_new, sched.now, sched.sleep
local suspend, current, cancelled = native.suspend, native.current, native.cancelled
local json_null, json_decode, json_encode = json.null, json.decode, json.encode

local M = {}

M.defaults = {
  connect_timeout_ms = 10000,
  pool_size = 10,
  backoff_min_ms = 100,   -- first wait before reconnecting after a failure
  backoff_max_ms = 5000,  -- doubling stops here
}

local function pack(...) return { n = select("#", ...), ... } end

-- fail(err, info) -> nil, err, info with info.code always set.
local function fail(err, info)
  if err == nil then return nil, "out of memory", { code = "out of memory" } end
  if info == nil then info = { code = err, message = err } end
  return nil, err, info
end

-- param(v, i) -> string | nil: a Lua value as a text parameter.
local function param(v, i)
  local t = type(v)
  if t == "string" or v == nil then return v end
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == huge then return "Infinity" end
    if v == -huge then return "-Infinity" end
    if v == floor(v) then return format("%.0f", v) end
    return format("%.17g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  if v == json_null then return nil end
  if t == "table" then
    local s, err = json_encode(v)
    if not s then error(format("pg: parameter %d cannot be sent as JSON: %s", i, tostring(err)), 4) end
    return s
  end
  error(format("pg: parameter %d has type %s (nil, boolean, number, string or table expected)", i, t), 4)
end

-- stmt(sql, args, n) -> {sql, p1, ..., pn, n = n}
local function stmt(sql, args, n)
  if type(sql) ~= "string" then error("pg: sql must be a string, got " .. type(sql), 3) end
  local s = { sql, n = n }
  for i = 1, n do s[i + 1] = param(args[i], i) end
  return s
end

-- batch_stmts(list) -> statements for native exec. An element is a SQL
-- string, or {sql, p1, ..., n = count} (n only needed for trailing nils).
local function batch_stmts(list)
  if type(list) ~= "table" then error("pg: batch expects an array of statements", 3) end
  local out = {}
  for i, s in ipairs(list) do
    if type(s) == "string" then
      out[i] = { s, n = 0 }
    elseif type(s) == "table" then
      local n = s.n or (maxn(s) - 1)
      if n < 0 then n = 0 end
      local args = {}
      for k = 1, n do args[k] = s[k + 1] end
      out[i] = stmt(s[1], args, n)
    else
      error(format("pg: batch statement %d must be a string or a table", i), 3)
    end
  end
  return out
end

-- finish(res) decodes the JSON columns in place; returns res.
local function finish(res)
  local cols = res.json
  if cols then
    res.json = nil
    for _, row in ipairs(res.rows) do
      for _, c in ipairs(cols) do
        local v = row[c]
        if v ~= nil then
          local d = json_decode(v)
          if d ~= nil then row[c] = d end -- the server sends valid JSON
        end
      end
    end
  end
  return res
end

function M.quote_ident(name)
  if type(name) ~= "string" or name == "" or name:find("\0", 1, true) then
    error("pg: an identifier must be a non-empty string without NUL", 2)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- Connection ---------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

-- connect(url, opts) -> conn | nil, err, info. url: a libpq URI or
-- conninfo string (use IP addresses: host names are resolved blocking).
function M.connect(url, opts)
  if type(url) ~= "string" then error("pg.connect: url must be a string", 2) end
  opts = opts or {}
  local c = pg_new(opts.connect_timeout_ms or M.defaults.connect_timeout_ms,
                   opts.cancel_timeout_ms)
  local ok, err, word = c:connect(url)
  if not ok then
    c:close()
    if err == nil then return fail(nil) end
    return nil, err, { code = word or err, message = err }
  end
  return setmetatable({ _c = c }, Conn)
end

-- run(stmts, simple) -> {res, ...} | nil, err, info
function Conn:_run(stmts, simple)
  local r, err, info = self._c:exec(stmts, simple)
  if not r then return fail(err, info) end
  for i = 1, #r do finish(r[i]) end
  return r
end

function Conn:query(sql, ...)
  local r, err, info = self:_run({ stmt(sql, { ... }, select("#", ...)) })
  if not r then return nil, err, info end
  return r[1]
end

function Conn:batch(list)
  local stmts = batch_stmts(list)
  if #stmts == 0 then return {} end
  return self:_run(stmts)
end

function Conn:exec(sql)
  if type(sql) ~= "string" then error("pg: sql must be a string", 2) end
  return self:_run({ { sql, n = 0 } }, true)
end

function Conn:listen(channel)
  local r, err, info = self:query("LISTEN " .. M.quote_ident(channel))
  if not r then return nil, err, info end
  return true
end

function Conn:unlisten(channel)
  local r, err, info = self:query("UNLISTEN " .. M.quote_ident(channel))
  if not r then return nil, err, info end
  return true
end

function Conn:notify(channel, payload)
  local r, err, info = self:query("SELECT pg_notify($1, $2)", channel, payload)
  if not r then return nil, err, info end
  return true
end

-- wait_notification(timeout_ms) -> {channel, payload, pid} | nil, word.
-- timeout_ms nil waits until one comes (or the task is cancelled); 0 only
-- takes one already queued. One task at a time may wait ("busy").
function Conn:wait_notification(timeout_ms)
  local ch, payload, pid = self._c:wait_notify(timeout_ms)
  if ch == nil then return nil, payload or "out of memory" end
  return { channel = ch, payload = payload, pid = pid }
end

function Conn:close() self._c:close() end
-- status() -> "ready" | "closed" ("new"/"connecting" never escape connect)
function Conn:status() return self._c:status() end
-- check() -> status after reading what the idle socket holds now
function Conn:check() return self._c:check() end
function Conn:pid() return self._c:pid() end
-- transaction_status() -> "idle" | "active" | "intrans" | "inerror" | "unknown"
function Conn:transaction_status() return self._c:txstatus() end

-- Pool -----------------------------------------------------------------------

local Pool = {}
Pool.__index = Pool

-- pool(url, opts): at most opts.size connections, opened on demand. After
-- a failed connect, the next attempt waits backoff_min_ms, doubling up to
-- backoff_max_ms (reset by a success). Lost connections are dropped when
-- returned or found dead, and replaced on demand.
function M.pool(url, opts)
  if type(url) ~= "string" then error("pg.pool: url must be a string", 2) end
  opts = opts or {}
  local size = opts.size or M.defaults.pool_size
  if type(size) ~= "number" or size < 1 or size ~= floor(size) then
    error("pg.pool: size must be a whole number >= 1", 2)
  end
  return setmetatable({
    url = url, size = size,
    connect_opts = { connect_timeout_ms = opts.connect_timeout_ms,
                     cancel_timeout_ms = opts.cancel_timeout_ms },
    backoff_min = opts.backoff_min_ms or M.defaults.backoff_min_ms,
    backoff_max = opts.backoff_max_ms or M.defaults.backoff_max_ms,
    idle = {},      -- connections ready for use (last released on top)
    open = 0,       -- connections open or being opened
    waiters = {},   -- tasks waiting for a connection, oldest first
    failures = 0,   -- connect failures in a row
    next_try = 0,   -- no connect attempt before this (sched.now() ms)
    closed = false,
  }, Pool)
end

-- kick: a slot was freed: the oldest waiter tries again.
local function kick(self)
  local ws = self.waiters
  while #ws > 0 do
    if remove(ws, 1):wake(true) then return end
  end
end

local function drop(self, c)
  c:close()
  self.open = self.open - 1
  kick(self)
end

-- release(c, strict): back to the pool (or to the oldest waiter). A
-- connection left inside a transaction is rolled back, or closed when
-- that cannot be waited for. strict (pool:with): one whose state is
-- unknown because a query still runs (cancelled) is closed too.
local function release(self, c, strict)
  if self.closed or c:status() ~= "ready" then return drop(self, c) end
  local tx = c:transaction_status()
  if tx == "intrans" or tx == "inerror" or (strict and tx ~= "idle") then
    if tx == "active" or cancelled() then return drop(self, c) end
    local ok = c:query("ROLLBACK")
    if not ok or self.closed or c:transaction_status() ~= "idle" then
      return drop(self, c)
    end
  end
  local ws = self.waiters
  while #ws > 0 do
    if remove(ws, 1):wake(c) then return end
  end
  self.idle[#self.idle + 1] = c
end

-- acquire() -> conn | nil, err, info. Waits for a free connection when all
-- are busy; the task's cancellation and deadline are honoured.
local function acquire(self)
  while true do
    if self.closed then return nil, "closed: the pool is closed", { code = "closed" } end
    local why = cancelled()
    if why then return fail(why) end
    local idle = self.idle
    while #idle > 0 do
      local c = remove(idle)
      if c:check() == "ready" then return c end
      c:close()
      self.open = self.open - 1
    end
    if self.open < self.size then
      self.open = self.open + 1
      local wait = self.next_try - now()
      if wait > 0 then
        local ok, reason = sleep(wait)
        if not ok then
          self.open = self.open - 1
          kick(self)
          return fail(reason)
        end
      end
      local c, err, info = M.connect(self.url, self.connect_opts)
      if c and self.closed then
        c:close()
        c, err, info = nil, "closed: the pool is closed", { code = "closed" }
      end
      if c then
        self.failures, self.next_try = 0, 0
        return c
      end
      self.open = self.open - 1
      if err ~= "cancelled" and err ~= "timeout" then -- not our task's end
        self.failures = self.failures + 1
        self.next_try = now() + min(self.backoff_max,
                                    self.backoff_min * 2 ^ (self.failures - 1))
      end
      kick(self)
      return nil, err, info
    end
    local me, ws = current(), self.waiters
    ws[#ws + 1] = me
    local got, reason = suspend()
    if got == nil then
      for i = #ws, 1, -1 do
        if ws[i] == me then remove(ws, i) break end
      end
      return fail(reason)
    end
    if got ~= true then -- a connection handed over
      why = cancelled()
      if why then
        release(self, got)
        return fail(why)
      end
      if got:check() == "ready" then return got end
      drop(self, got)
    end
  end
end

function Pool:_run(stmts, simple)
  local c, err, info = acquire(self)
  if not c then return nil, err, info end
  local r
  r, err, info = c:_run(stmts, simple)
  release(self, c)
  if not r then return nil, err, info end
  return r
end

function Pool:query(sql, ...)
  local r, err, info = self:_run({ stmt(sql, { ... }, select("#", ...)) })
  if not r then return nil, err, info end
  return r[1]
end

function Pool:batch(list)
  local stmts = batch_stmts(list)
  if #stmts == 0 then return {} end
  return self:_run(stmts)
end

function Pool:exec(sql)
  if type(sql) ~= "string" then error("pg: sql must be a string", 2) end
  return self:_run({ { sql, n = 0 } }, true)
end

-- with(fn, ...) -> fn(conn, ...)'s results | nil, err, info (no connection).
-- The connection is the caller's until fn returns; it goes back to the
-- pool even when fn raises (the error is raised again). A transaction fn
-- left open is rolled back.
function Pool:with(fn, ...)
  if type(fn) ~= "function" then error("pool:with expects a function", 2) end
  local c, err, info = acquire(self)
  if not c then return nil, err, info end
  local r = pack(pcall(fn, c, ...))
  release(self, c, true)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

-- transaction(fn, ...): BEGIN, fn(conn, ...), then COMMIT; or ROLLBACK when
-- fn raises (the error is raised again), returns false, or returns nil
-- with an error. Returns fn's results (true if none) after a successful
-- COMMIT, else nil, err, info: fn's own error value, the COMMIT's error,
-- or "rolled back" (fn returned false, or a statement had failed).
function Pool:transaction(fn, ...)
  if type(fn) ~= "function" then error("pool:transaction expects a function", 2) end
  local args = pack(...)
  return self:with(function(c)
    local ok, err, info = c:query("BEGIN")
    if not ok then return nil, err, info end
    local r = pack(pcall(fn, c, unpack(args, 1, args.n)))
    if not r[1] then
      c:query("ROLLBACK")
      error(r[2], 0)
    end
    if r[2] == false or (r[2] == nil and r[3] ~= nil) then
      c:query("ROLLBACK")
      if r[3] ~= nil then return nil, r[3], r[4] end
      return nil, "rolled back", { code = "rolled back" }
    end
    ok, err, info = c:query("COMMIT")
    if not ok then return nil, err, info end
    -- COMMIT of a failed transaction answers ROLLBACK, without an error.
    if ok.command == "ROLLBACK" then
      return nil, "rolled back: a statement of the transaction failed",
             { code = "rolled back" }
    end
    if r.n < 2 then return true end
    return unpack(r, 2, r.n)
  end)
end

function Pool:stats()
  return { size = self.size, open = self.open, idle = #self.idle,
           waiting = #self.waiters, failures = self.failures }
end

-- close(): idle connections close now, busy ones when they are returned;
-- waiting tasks get nil, "closed...". Idempotent.
function Pool:close()
  if self.closed then return end
  self.closed = true
  for _, c in ipairs(self.idle) do c:close() end
  self.open = self.open - #self.idle
  self.idle = {}
  local ws = self.waiters
  self.waiters = {}
  for _, w in ipairs(ws) do w:wake(true) end
end

return M
