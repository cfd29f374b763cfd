-- chorus.log: log records on stderr, one per line, as JSON or as text,
-- filtered by level, written without ever blocking the loop.
--
--   log.debug|info|warn|error(fmt, ...)        a record; msg = fmt:format(...)
--   log.debug_with|info_with|warn_with|error_with(fields, fmt, ...)
--                                              the same with fields: values
--                                              (strings, numbers, booleans,
--                                              tables as JSON), never only
--                                              formatted into msg. fields is
--                                              {key = value} (trace_id,
--                                              execution_id, step_id first)
--                                              or, in an order of its own,
--                                              {"key", value, "key", value}
--                                              (a nil value leaves its
--                                              field out)
--   log.line(level, msg, "key", value, ...)  the same, fields as arguments
--                                              (no table: hot paths), msg as
--                                              is, level a number; the
--                                              caller checks log.level
--   log.with(fields) -> a logger whose :debug/:info/:warn/:error(fmt, ...)
--                       add those fields (and :with(more) adds more)
--   log.enabled(name) -> whether a record at that level is written (skip
--                        building fields nobody reads)
--   log.configure({level, format}) -> true | nil, err
--   log.set_field(name, value|nil)  a field of every record (node)
--   log.secret(value), log.secret_url(url)  never print these
--   log.flush(ms) -> true | false   wait for stderr to take what is queued
--   log.level (1 debug .. 5 off), log.format ("json" | "text"),
--   log.sink (nil: stderr; specs set a {write = fn} to capture records)
--   log.observe (nil; the spec runner's guard: fn(level, msg, fields) sees
--   every record written, spec/support/log_guard.lua)
--
-- JSON: {"ts":"<RFC 3339 UTC, ms>","level":"info","msg":"...","node":...,
-- "trace_id":...,"execution_id":...,"step_id":...,...}; text (a
-- terminal): "<ts> info  msg key=value ...". The line is built in C
-- (runtime/rt_logline.c: escapes, U+FFFD for bad bytes, secrets taken
-- out) and handed to a writer thread (runtime/rt_log.c): when stderr is
-- slow or full, records are dropped and counted (native.log_dropped(),
-- chorus_log_lines_dropped_total) instead of stalling the process.
--
-- Defaults: level from CHORUS_LOG_LEVEL (or its older name CHORUS_LOG),
-- else info; format from CHORUS_LOG_FORMAT, else text when stderr is a
-- terminal and JSON otherwise; CHORUS_LOG_BUFFER_KB (4096) is how much
-- may wait for stderr before records are dropped. Commands that run long take --log-level
-- and --log-format (chorus.cli.logopts).
local native = require "chorus.native"

local pcall, select, tostring, format, setmetatable, pairs =
  pcall, select, tostring, string.format, setmetatable, pairs
local emit, format_line = native.log_emit, native.log_format

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4, off = 5 }
local NAMES = { "debug", "info", "warn", "error" }
local FORMATS = { json = true, text = true }

local M = { LEVELS = LEVELS }

-- parse_level(s) -> number | nil, err
function M.parse_level(s)
  local n = LEVELS[s]
  if not n then return nil, ("must be one of debug, info, warn, error, off, got '%s'"):format(tostring(s)) end
  return n
end

-- parse_format(s) -> s | nil, err
function M.parse_format(s)
  if not FORMATS[s] then return nil, ("must be json or text, got '%s'"):format(tostring(s)) end
  return s
end

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

M.level = LEVELS[env("CHORUS_LOG_LEVEL") or env("CHORUS_LOG") or "info"] or LEVELS.info
M.format = FORMATS[env("CHORUS_LOG_FORMAT")] and env("CHORUS_LOG_FORMAT")
  or (native.isatty(2) and "text" or "json")

-- CHORUS_LOG_BUFFER_KB: how much may wait for stderr before records are
-- dropped (default 4096; a bad value is reported by chorus.cli.logopts).
function M.parse_buffer_kb(s)
  local n = tonumber(s)
  if not n or n ~= math.floor(n) or n < 16 or n > 1048576 then
    return nil, ("must be a whole number of KiB from 16 to 1048576, got '%s'"):format(tostring(s))
  end
  return n
end

local function setup()
  native.log_setup({ json = M.format == "json", encode = function(t)
    return require("chorus.json").encode_lenient(t)
  end, buffer = (M.parse_buffer_kb(env("CHORUS_LOG_BUFFER_KB")) or 4096) * 1024 })
end
setup()

local function write(lvl, fields, fmt, ...)
  local msg
  if select("#", ...) > 0 then
    local ok, s = pcall(format, fmt, ...)
    msg = ok and s or tostring(fmt)
  else
    msg = tostring(fmt)
  end
  if M.observe then M.observe(NAMES[lvl], msg, fields) end
  local sink = M.sink
  if sink then
    sink:write(format_line(NAMES[lvl], msg, fields))
  else
    emit(NAMES[lvl], msg, fields)
  end
end

function M.debug(...) if M.level <= 1 then write(1, nil, ...) end end
function M.info(...) if M.level <= 2 then write(2, nil, ...) end end
function M.warn(...) if M.level <= 3 then write(3, nil, ...) end end
function M.error(...) if M.level <= 4 then write(4, nil, ...) end end

-- line(level, msg, "key", value, ...): a record whose fields follow its
-- message as arguments, in that order (a nil value leaves its field
-- out): no table is built, for the records written per request or per
-- execution. level is a number (log.LEVELS) and msg is written as it is,
-- not formatted; the caller checks log.level first.
function M.line(lvl, msg, ...)
  if M.observe or M.sink then return write(lvl, { ... }, msg) end
  emit(NAMES[lvl], msg, ...)
end

function M.debug_with(fields, ...) if M.level <= 1 then write(1, fields, ...) end end
function M.info_with(fields, ...) if M.level <= 2 then write(2, fields, ...) end end
function M.warn_with(fields, ...) if M.level <= 3 then write(3, fields, ...) end end
function M.error_with(fields, ...) if M.level <= 4 then write(4, fields, ...) end end

-- enabled(name) -> boolean
function M.enabled(name)
  return M.level <= (LEVELS[name] or 5)
end

-- A logger with fields of its own (log.with).
local Logger = {}
Logger.__index = Logger

function M.with(fields)
  return setmetatable({ fields = fields or {} }, Logger)
end

function Logger:with(more)
  local f = {}
  for k, v in pairs(self.fields) do f[k] = v end
  for k, v in pairs(more or {}) do f[k] = v end
  return setmetatable({ fields = f }, Logger)
end

function Logger:debug(...) if M.level <= 1 then write(1, self.fields, ...) end end
function Logger:info(...) if M.level <= 2 then write(2, self.fields, ...) end end
function Logger:warn(...) if M.level <= 3 then write(3, self.fields, ...) end end
function Logger:error(...) if M.level <= 4 then write(4, self.fields, ...) end end

function M.set_level(name)
  M.level = assert(LEVELS[name], "unknown log level")
end

-- configure({level = name, format = "json"|"text"}) -> true | nil, err
function M.configure(opts)
  if opts.level ~= nil then
    local n, err = M.parse_level(opts.level)
    if not n then return nil, "log level " .. err end
    M.level = n
  end
  if opts.format ~= nil then
    local f, err = M.parse_format(opts.format)
    if not f then return nil, "log format " .. err end
    M.format = f
    setup()
  end
  return true
end

-- set_field(name, value|nil): a field of every record from now on.
function M.set_field(name, value)
  native.log_field(name, value ~= nil and tostring(value) or nil)
end

-- Secrets: values shorter than this are not registered (a value that
-- short would blank common words out of every line, and a password that
-- short is not one); URLs' passwords are taken out wherever they appear
-- anyway (runtime/rt_logline.c).
local MIN_SECRET = 6

function M.secret(value)
  if type(value) ~= "string" or #value < MIN_SECRET then return end
  -- An API key (chk_ and 32 hex digits or more, RT_KEY_MIN_HEX in
  -- runtime/rt_logline.c; CHORUS_ADMIN_KEY) is taken out of every line
  -- by the key pass already, its public prefix kept; as a secret too it
  -- cost every line a search for nothing.
  local hex = value:match("^chk_(%x+)$")
  if hex and #hex >= 32 then return end
  native.log_secret(value)
  -- Inside a JSON string the value is written escaped.
  local escaped = require("chorus.json").encode(value)
  if escaped and escaped:sub(2, -2) ~= value then native.log_secret(escaped:sub(2, -2)) end
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- secret_url(url): the password of a URL (postgresql://user:pw@host).
function M.secret_url(url)
  if type(url) ~= "string" then return end
  local pw = url:match("^%a[%w+.-]*://[^/@]-:([^/@]*)@")
  if pw and pw ~= "" then
    M.secret(pw)
    M.secret(unescape(pw))
  end
end

-- Environment variables whose name says they hold a secret; and the
-- passwords in URL-valued ones (DATABASE_URL, REDIS_URL).
local SECRET_NAME = { "KEY", "SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL", "PRIVATE" }
local NOT_SECRET = { ["true"] = true, ["false"] = true, yes = true, no = true, on = true, off = true }

-- protect_env(): registers the environment's secrets (done at load; again
-- after a change of environment, for specs).
function M.protect_env()
  for name, value in pairs(native.environ()) do
    local upper = name:upper()
    for _, word in ipairs(SECRET_NAME) do
      if upper:find(word, 1, true) and not NOT_SECRET[value:lower()] then
        M.secret(value)
        break
      end
    end
    if value:find("://", 1, true) then M.secret_url(value) end
  end
end
M.protect_env()

-- flush(ms) -> true | false (stderr did not take it all in time). Blocks:
-- for the end of a command and for specs.
function M.flush(ms)
  return native.log_flush(ms or 1000)
end

return M
