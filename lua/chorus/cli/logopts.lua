-- chorus.cli.logopts: --log-level and --log-format, for the commands that
-- run long (serve, worker, run).
--
--   logopts.add(SPEC, ORDER)    adds the two options (before --help)
--   logopts.apply(opts) -> true | nil, err   configures chorus.log from
--     the options, else CHORUS_LOG_LEVEL (or CHORUS_LOG) and
--     CHORUS_LOG_FORMAT; a bad value (or CHORUS_LOG_BUFFER_KB) is an
--     error naming where it came from. Also registers the passwords of --db and --redis URLs as
--     secrets no record may show.
local log = require "chorus.log"

local M = {}

M.SPEC = {
  ["log-level"] = { type = "string", arg = "LEVEL",
    help = "debug, info, warn, error or off (default: $CHORUS_LOG_LEVEL, else info)" },
  ["log-format"] = { type = "string", arg = "FORMAT",
    help = "json or text (default: $CHORUS_LOG_FORMAT, else text on a terminal, json otherwise)" },
}

function M.add(spec, order)
  for name, s in pairs(M.SPEC) do spec[name] = s end
  local at = #order + 1
  for i, name in ipairs(order) do
    if name == "help" then at = i break end
  end
  table.insert(order, at, "log-format")
  table.insert(order, at, "log-level")
end

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- pick(flag, opts, names...) -> value, where it came from
local function pick(opts, flag, ...)
  if opts[flag] ~= nil then return opts[flag], "--" .. flag end
  for _, name in ipairs({ ... }) do
    local v = env(name)
    if v then return v, name end
  end
end

function M.apply(opts)
  local level, lfrom = pick(opts, "log-level", "CHORUS_LOG_LEVEL", "CHORUS_LOG")
  if level then
    local ok, err = log.parse_level(level)
    if not ok then return nil, lfrom .. " " .. err end
  end
  local format, ffrom = pick(opts, "log-format", "CHORUS_LOG_FORMAT")
  if format then
    local ok, err = log.parse_format(format)
    if not ok then return nil, ffrom .. " " .. err end
  end
  local kb = env("CHORUS_LOG_BUFFER_KB")
  if kb then
    local ok, err = log.parse_buffer_kb(kb)
    if not ok then return nil, "CHORUS_LOG_BUFFER_KB " .. err end
  end
  assert(log.configure({ level = level, format = format }))
  log.secret_url(opts.db)
  log.secret_url(opts.redis)
  return true
end

return M
