-- `chorus serve --workers N`: the supervisor starts its workers itself
-- (libuv, no shell in between), starts another when one dies, passes
-- SIGHUP and SIGTERM on, and leaves no worker behind when it stops.
local h = require "spec.helpers"
local client = require "chorus.http.client"

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The pids whose parent is pid, from /proc.
local function children(pid)
  local out = {}
  local ls = assert(io.popen("ls /proc"))
  for name in ls:lines() do
    if name:match("^%d+$") then
      local st = slurp("/proc/" .. name .. "/stat")
      local ppid = st and st:match("^%d+ %b() %a (%d+)")
      if tonumber(ppid) == pid and h.alive(tonumber(name)) then out[#out + 1] = tonumber(name) end
    end
  end
  ls:close()
  table.sort(out)
  return out
end

local function count(s, pattern)
  local _, n = (s or ""):gsub(pattern, "")
  return n
end

local function healthz(port)
  local res = client.request({ method = "GET", url = ("http://127.0.0.1:%d/healthz"):format(port),
    headers = { connection = "close" }, timeout_ms = 5000 })
  return res and res.status
end

describe("chorus serve --workers", function()
  it("starts its workers itself, replaces one that dies, passes SIGHUP and SIGTERM on", function()
    local log = os.tmpname()
    local pid = h.spawn(("%s serve --workers 2 --listen 127.0.0.1:0 --no-auth"):format(h.binary), log)
    local kids
    finally(function()
      for _, k in ipairs(kids or {}) do h.kill(k, "KILL") end
      if h.alive(pid) then h.kill(pid, "KILL") end
      os.remove(log)
    end)
    assert.is_true(h.wait_until(function() return count(slurp(log), "listening on") >= 2 end, 10000),
      "workers did not start: " .. (slurp(log) or ""))
    local port = tonumber(slurp(log):match("listening on 127%.0%.0%.1:(%d+)"))

    -- The workers are the supervisor's own children, this very binary.
    kids = children(pid)
    assert.equal(2, #kids)
    local exe = assert(io.popen("readlink -f " .. h.binary)):read("*l")
    for _, k in ipairs(kids) do
      assert.equal(exe, assert(io.popen(("readlink /proc/%d/exe"):format(k))):read("*l"))
      local cmdline = slurp(("/proc/%d/cmdline"):format(k)):gsub("%z", " ")
      assert.matches("serve .*%-%-listen 127%.0%.0%.1:" .. port .. " %-%-reuseport", cmdline)
    end
    assert.matches(("serve: 2 workers started on 127%%.0%%.0%%.1:%d %%(pids %d, %d%%)"):format(port, kids[1], kids[2]),
      slurp(log))

    -- A worker killed: the supervisor says how it ended and starts another.
    h.kill(kids[1], "KILL")
    assert.is_true(h.wait_until(function()
      local now = children(pid)
      return #now == 2 and now[1] ~= kids[1] and now[2] ~= kids[1]
    end, 10000), "no new worker")
    assert.matches(("worker %%d %%(pid %d%%) was killed by SIGKILL; starting another"):format(kids[1]), slurp(log))
    kids = children(pid)
    assert.is_true(h.wait_until(function() return count(slurp(log), "listening on") >= 3 end, 10000))
    assert.equal(200, healthz(port))

    -- SIGHUP reaches every worker (each reloads its scripts).
    h.kill(pid, "HUP")
    assert.is_true(h.wait_until(function() return count(slurp(log), "SIGHUP, reloading") >= 2 end, 10000),
      "SIGHUP not passed on: " .. slurp(log))

    -- SIGTERM: every worker stops, then the supervisor, with status 0.
    h.kill(pid, "TERM")
    assert.is_true(h.wait_exit(pid, 20000), "supervisor did not exit")
    for _, k in ipairs(kids) do assert.is_false(h.alive(k), "worker " .. k .. " left running") end
    assert.is_nil(healthz(port))
  end)
end)
