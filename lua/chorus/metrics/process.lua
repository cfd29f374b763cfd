-- chorus.metrics.process: the standard process_* series every Prometheus
-- client exports (so stock dashboards and alerts work on Chorus too),
-- read from /proc at scrape time. Linux only, as Chorus is; a file that
-- cannot be read gives no sample rather than a wrong one.
--
--   require("chorus.metrics.process").register(reg) -> reg
local native = require "chorus.native"

local M = {}

-- /proc's clock ticks (USER_HZ): 100 on every Linux ABI Chorus builds for.
local TICKS = 100

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The fields of /proc/self/stat after the command name (which may hold
-- spaces and parentheses: cut at the last ')'), numbered as in proc(5).
local function stat_fields()
  local s = slurp("/proc/self/stat")
  local rest = s and s:match("^.*%) (.*)$")
  if not rest then return nil end
  local f, i = {}, 3
  for w in rest:gmatch("%S+") do
    f[i] = w
    i = i + 1
  end
  return f
end

-- Unix time the process started: boot time + its start in ticks. Read
-- once: it does not change.
local function start_time()
  local f = stat_fields()
  local boot = tonumber((slurp("/proc/stat") or ""):match("\nbtime (%d+)"))
  local ticks = f and tonumber(f[22])
  if not boot or not ticks then return nil end
  return boot + ticks / TICKS
end

function M.register(reg)
  reg:counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", {}, function()
    local f = stat_fields()
    local u, s = f and tonumber(f[14]), f and tonumber(f[15])
    return u and s and (u + s) / TICKS or nil
  end)
  reg:gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {}, native.rss)
  reg:gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {}, function()
    local f = stat_fields()
    return f and tonumber(f[23])
  end)
  local started = start_time()
  reg:gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", {},
    function() return started end)
  reg:gauge("process_open_fds", "Open file descriptors.", {}, function()
    local list = native.list_dir("/proc/self/fd")
    return list and #list or nil
  end)
  reg:gauge("process_max_fds", "Maximum number of open file descriptors (the soft limit).", {}, function()
    local n = (slurp("/proc/self/limits") or ""):match("Max open files%s+(%d+)")
    return tonumber(n)
  end)
  return reg
end

return M
