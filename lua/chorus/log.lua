-- chorus.log: one-line log records on stderr, filtered by level.
-- CHORUS_LOG=debug|info|warn|error sets the level (default info).
local native = require "chorus.native"

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4, off = 5 }
local M = { level = LEVELS[os.getenv("CHORUS_LOG") or "info"] or 2, sink = io.stderr }

local function write(name, fmt, ...)
  if LEVELS[name] < M.level then return end
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then msg = tostring(fmt) end
  local t = native.time()
  M.sink:write(("%s.%03d %-5s %s\n"):format(os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)),
    math.floor((t % 1) * 1000), name, msg))
end

function M.set_level(name)
  M.level = assert(LEVELS[name], "unknown log level")
end

function M.debug(...) write("debug", ...) end
function M.info(...) write("info", ...) end
function M.warn(...) write("warn", ...) end
function M.error(...) write("error", ...) end

return M
