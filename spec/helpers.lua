-- spec/helpers.lua: the one front door for specs: engines over the fixture
-- scripts, running a config, collecting events, temp dirs, the binary.
local engine_mod = require "chorus.engine"
local native = require "chorus.native"
local sched = require "chorus.sched"

local M = {}

M.root = native.home
M.fixtures = native.home .. "/spec/fixtures"
M.binary = os.getenv("CHORUS_BIN") or (native.home .. "/build/chorus")

-- A probe shared by fixture agents and specs (see fixtures/scripts/agents).
function M.probe()
  local p = { running = 0, peak = 0, calls = {}, log = {} }
  package.loaded["test.probe"] = p
  return p
end

-- engine({scripts = {...}, watch = bool}) with the fixture scripts overlaid.
function M.engine(opts)
  opts = opts or {}
  local scripts = { M.fixtures .. "/scripts" }
  for _, d in ipairs(opts.scripts or {}) do scripts[#scripts + 1] = d end
  return assert(engine_mod.new({ scripts = scripts, watch = opts.watch, store = opts.store }))
end

-- run(doc, input, opts) -> exec, events. Validates (asserting it is
-- valid), runs to the end and returns the execution and every event.
function M.run(doc, input, opts)
  opts = opts or {}
  local engine = opts.engine or M.engine()
  local cfg, errs = engine:validate(doc)
  if not cfg then error("invalid config in spec: " .. require("chorus.engine.validate").format_errors(errs), 2) end
  local events = {}
  local tok = engine.bus:subscribe(function(e) events[#events + 1] = e end)
  local exec = engine:execute(cfg, input or {}, opts)
  if opts.during then opts.during(exec) end
  exec:wait()
  engine.bus:unsubscribe(tok)
  return exec, events
end

-- flat(strategy, steps, settings) -> a flat-form config document
function M.flat(strategy, steps, settings)
  return { name = "spec", strategy = strategy, steps = steps, settings = settings }
end

-- step_events(events, id) -> the statuses step id went through, in order
function M.step_statuses(events, id)
  local out = {}
  for _, e in ipairs(events) do
    if e.type == "step.status" and e.step_id == id then out[#out + 1] = e.status end
  end
  return out
end

function M.exec_statuses(events)
  local out = {}
  for _, e in ipairs(events) do
    if e.type == "execution.status" then out[#out + 1] = e.status end
  end
  return out
end

-- wait_until(fn, ms): polls fn every ms/50 until it is truthy or ms pass.
function M.wait_until(fn, ms)
  ms = ms or 2000
  local t0 = sched.now()
  while not fn() do
    if sched.now() - t0 > ms then return false end
    sched.sleep(2)
  end
  return true
end

function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p .. "/agents " .. p .. "/strategies/aggregators") == 0)
  return p
end

function M.write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

-- sh(cmd) -> exit code, stdout, stderr (blocks the loop: CLI specs only)
function M.sh(cmd)
  local out_path, err_path = os.tmpname(), os.tmpname()
  local code = os.execute(("%s >%s 2>%s"):format(cmd, out_path, err_path))
  local function slurp(p)
    local f = io.open(p, "rb")
    local s = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(p)
    return s
  end
  -- os.execute returns the wait status under Lua 5.1 / LuaJIT.
  if code > 255 then code = math.floor(code / 256) end
  return code, slurp(out_path), slurp(err_path)
end

-- Services ------------------------------------------------------------------

-- pg_url() -> the test server's URL (CHORUS_TEST_PG), or nil: specs that
-- need PostgreSQL are tagged #postgres and skipped without it.
function M.pg_url()
  local u = os.getenv("CHORUS_TEST_PG")
  if u == nil or u == "" then return nil end
  return u
end

-- fresh_db(prefix) -> url of a new, migrated database of the test server
function M.fresh_db(prefix)
  local base = assert(M.pg_url(), "CHORUS_TEST_PG is not set")
  local pg = require "chorus.db.pg"
  local name = ("%s_%s"):format(prefix or "spec", native.random_hex(4))
  local admin = assert(pg.connect(base))
  assert(admin:query("CREATE DATABASE " .. pg.quote_ident(name)))
  admin:close()
  local url = base:gsub("/[^/]*$", "/" .. name)
  local pool = pg.pool(url, { size = 1 })
  assert(require("chorus.db.migrate").up(pool))
  pool:close()
  return url
end

-- spawn(cmd, log) -> pid of `cmd` started in the background (its output
-- appended to log). Specs stop what they spawn with kill().
function M.spawn(cmd, log)
  local pidfile = os.tmpname()
  assert(os.execute(("(exec %s) >>%s 2>&1 </dev/null & echo $! >%s"):format(cmd, log or "/dev/null", pidfile)) == 0)
  local f = assert(io.open(pidfile))
  local pid = tonumber(f:read("*l"))
  f:close()
  os.remove(pidfile)
  return pid
end

-- kill(pid, sig): sig defaults to TERM
function M.kill(pid, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", pid))
end

-- alive(pid) -> boolean (a zombie nobody reaped yet counts as gone)
function M.alive(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return false end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- wait_exit(pid, ms) -> true once the process is gone (reaps nothing:
-- our children are reaped by the shell that started them)
function M.wait_exit(pid, ms)
  return M.wait_until(function() return not M.alive(pid) end, ms or 10000)
end

-- redis_restart_command(port) -> the command that starts the test Redis
-- again as it is configured now (dir, pidfile, logfile, bind, unix
-- socket), read from the running server, for specs that stop it.
function M.redis_restart_command(port)
  local redis = require "chorus.db.redis"
  local c = assert(redis.connect(("redis://127.0.0.1:%d/0"):format(port)))
  local function config(name)
    local r = c:call("CONFIG", "GET", name)
    return type(r) == "table" and r[2] or nil
  end
  local start = ("redis-server --port %d --daemonize yes --save '' --appendonly no --bind"):format(port)
  local bind = config("bind")
  if not bind or bind == "" then bind = "127.0.0.1" end
  for addr in bind:gmatch("%S+") do start = start .. " '" .. addr .. "'" end
  for _, name in ipairs({ "dir", "pidfile", "logfile" }) do
    local v = config(name)
    if v and v ~= "" then start = start .. (" --%s '%s'"):format(name, v) end
  end
  local unixsocket = config("unixsocket")
  if unixsocket and unixsocket ~= "" then
    start = start .. " --unixsocket '" .. unixsocket .. "' --unixsocketperm " .. (config("unixsocketperm") or "700")
  end
  c:close()
  return start
end

function M.read_lines(path)
  local out = {}
  local f = io.open(path)
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

return M
