-- chorus serve [--listen HOST:PORT] [--db URL] [--redis URL] [--scripts DIR]
-- [--workers N]: the HTTP/WebSocket server (REST API, live events,
-- /metrics, /healthz, /readyz). Without a database it runs in memory;
-- with one (--db or DATABASE_URL) it is also a node that claims and runs
-- executions. SIGTERM/SIGINT stop it gracefully; SIGHUP reloads scripts.
--
-- --workers N starts N processes sharing the port (SO_REUSEPORT); this
-- one supervises: it restarts a worker that dies and passes SIGTERM and
-- SIGHUP on (workers are started through libuv, not a shell).
-- With --workers, --listen HOST:0 picks one free port for all of them.
-- In memory mode each worker keeps its own executions, so with N > 1 use
-- a database for status reads to be consistent.
local args = require "chorus.cli.args"
local logopts = require "chorus.cli.logopts"
local db = require "chorus.cli.db"
local log = require "chorus.log"
local sched = require "chorus.sched"
local native = require "chorus.native"

local SPEC = {
  listen = { type = "string", arg = "HOST:PORT", help = "address to listen on (default 127.0.0.1:8080)" },
  db = db.SPEC,
  ["kb-db"] = db.KB_SPEC,
  redis = { type = "string", arg = "URL", help = "Redis for the event bus (default: $REDIS_URL; none: local only)" },
  scripts = { type = "list", arg = "DIR", help = "overlay script directory (repeatable)" },
  sandbox = { type = "flag", help = "load --scripts without os, io, ffi, debug (scripts are trusted code otherwise)" },
  workers = { type = "string", arg = "N", help = "processes sharing the port (default 1)" },
  concurrency = { type = "string", arg = "N", help = "executions in flight per process, with a database (default 1000)" },
  ["lease-ms"] = { type = "string", arg = "MS", help = "execution lease, with a database (default 15000)" },
  ["grace-ms"] = { type = "string", arg = "MS", help = "on SIGTERM, time given to running executions (default 10000)" },
  ["max-body"] = { type = "string", arg = "BYTES", help = "largest request body (default 1048576)" },
  ["max-inflight"] = { type = "string", arg = "N", help = "in memory: executions running at most; more get 429 (default 10000)" },
  ["max-pending"] = { type = "string", arg = "N", help = "with a database: pending backlog past which submits get 429 (default 100000)" },
  ["max-client-conns"] = { type = "string", arg = "N", help = "open connections from one client address (default 2048)" },
  ["no-auth"] = { type = "flag", help = "no API keys: every request acts as an admin (development only)" },
  reuseport = { type = "flag", help = "share the port with other processes (set by --workers)" },
  help = { type = "flag", short = "h", help = "show this help" },
}
local ORDER = { "listen", "db", "kb-db", "redis", "scripts", "sandbox", "workers", "concurrency", "lease-ms", "grace-ms", "max-body", "max-inflight", "max-pending", "max-client-conns",
  "no-auth", "help" }
logopts.add(SPEC, ORDER)

local function int(opts, name, min, default)
  local v = opts[name]
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < min then return nil, ("--%s must be an integer >= %d"):format(name, min) end
  return n
end

-- A worker that exits this soon after its start counts as failing to start;
-- after START_FAILURES of those in a row the supervisor gives up instead of
-- restarting it forever (a bad --db URL, a broken script directory). Each
-- failure in a row waits BACKOFF_MS longer before the next start, so a
-- database that is restarting gets a moment.
local START_MS, START_FAILURES, BACKOFF_MS = 2000, 5, 200

local function how_it_ended(code, sig)
  if sig then return "was killed by " .. sig end
  return "exited with status " .. code
end

-- The supervisor of --workers N. It binds the port first (without
-- listening), so a port in use is one error at start and port 0 means one
-- free port shared by all workers; the workers get it as --listen. A
-- worker is this binary, `serve ARGS --listen ADDR --reuseport`, started
-- through libuv (native.spawn_process: no shell, its exit noticed by the
-- loop) and watched by a task of its own that starts another when it dies.
local function supervise(n, argv, host, port)
  local reservation, actual = native.reserve_port(host, port)
  if not reservation then io.stderr:write("chorus serve: " .. actual .. "\n") return 1 end
  -- Read once: a package upgrade replaces the file under a running
  -- supervisor, and later workers must start from the same path.
  local exe, eerr = native.exepath()
  if not exe then
    reservation:close()
    io.stderr:write("chorus serve: " .. eerr .. "\n")
    return 1
  end
  local listen = (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, actual)
  local cmd = { exe, "serve" }
  local skip = false
  for _, a in ipairs(argv) do
    if skip then
      skip = false
    elseif a == "--workers" or a == "--listen" then
      skip = true
    elseif not a:match("^%-%-workers=") and not a:match("^%-%-listen=") then
      cmd[#cmd + 1] = a
    end
  end
  for _, a in ipairs({ "--listen", listen, "--reuseport" }) do cmd[#cmd + 1] = a end

  -- workers[i] = {id, proc (nil while none runs), pid, started, failures}
  local workers, stopping, code = {}, false, 0
  local function signal_all(sig)
    for _, w in ipairs(workers) do
      if w.proc then w.proc:kill(sig) end
    end
  end
  local function stop_all()
    stopping = true
    signal_all("SIGTERM")
  end
  local function start(w)
    local err
    w.started = native.now()
    w.proc, err = native.spawn_process(cmd, { stdin = "null" })
    w.pid = w.proc and w.proc:pid()
    if not w.proc then log.error("serve: worker %d: %s", w.id, err) end
  end
  -- Worker w's task: wait for its exit and start another, until stopping
  -- or until it keeps failing at start.
  local function watch(w)
    while true do
      local why = "could not start"
      if w.proc then
        local status, sig = w.proc:wait()
        if status == nil then return end -- this task was cancelled
        why = how_it_ended(status, sig)
        w.proc = nil
      end
      if stopping then return end
      local who = ("worker %d (pid %s)"):format(w.id, w.pid or "-")
      w.failures = native.now() - w.started < START_MS and w.failures + 1 or 0
      if w.failures >= START_FAILURES then
        log.error("serve: %s %s: it exited at start %d times in a row; giving up", who, why, w.failures)
        code = 1
        stop_all()
        return
      end
      log.warn("serve: %s %s; starting another", who, why)
      if w.failures > 0 then sched.sleep(BACKOFF_MS * w.failures) end
      if stopping then return end
      start(w)
    end
  end

  local pids = {}
  for i = 1, n do
    workers[i] = { id = i, failures = 0 }
    start(workers[i])
    pids[i] = tostring(workers[i].pid or "-")
  end
  log.info("serve: %d workers started on %s (pids %s)", n, listen, table.concat(pids, ", "))
  local hooks = {}
  for _, sig in ipairs({ "SIGTERM", "SIGINT" }) do
    hooks[#hooks + 1] = native.on_signal(sig, stop_all)
  end
  hooks[#hooks + 1] = native.on_signal("SIGHUP", function() signal_all("SIGHUP") end)
  local tasks = {}
  for i, w in ipairs(workers) do tasks[i] = sched.spawn(watch, w) end
  sched.wait_all(tasks)
  for _, t in ipairs(tasks) do
    local ok, err = t:join()
    if not ok then
      log.error("serve: supervising a worker failed: %s", tostring(err))
      code = 1
    end
  end
  for _, h in ipairs(hooks) do h:close() end
  reservation:close()
  return code
end

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus serve: " .. pos .. "\n") return 2 end
  if opts.help then io.stdout:write("usage: chorus serve [options]\n\n" .. args.usage(SPEC, ORDER)) return 0 end
  local logged, lerr = logopts.apply(opts)
  if not logged then io.stderr:write("chorus serve: " .. lerr .. "\n") return 2 end
  if #pos > 0 then io.stderr:write("chorus serve: unexpected argument " .. pos[1] .. "\n") return 2 end
  local host, port = "127.0.0.1", 8080
  if opts.listen then
    host, port = opts.listen:match("^%[?([^%]]*)%]?:(%d+)$")
    port = tonumber(port)
    if not host or not port or port > 65535 then
      io.stderr:write("chorus serve: --listen must be HOST:PORT, got " .. opts.listen .. "\n")
      return 2
    end
  end
  local n = {}
  for name, spec in pairs({ workers = { 1, 1 }, concurrency = { 1 }, ["lease-ms"] = { 300 }, ["grace-ms"] = { 0, 10000 },
    ["max-body"] = { 1024, 1048576 }, ["max-inflight"] = { 1, 10000 }, ["max-pending"] = { 1, 100000 },
    ["max-client-conns"] = { 1, 2048 } }) do
    local v, err = int(opts, name, spec[1], spec[2])
    if err then io.stderr:write("chorus serve: " .. err .. "\n") return 2 end
    n[name] = v
  end
  if n.workers > 1 then
    if not db.url(opts) then
      log.warn("serve: --workers %d in memory: each worker keeps its own executions", n.workers)
    end
    return supervise(n.workers, argv, host, port)
  end
  local redis_url = opts.redis or os.getenv("REDIS_URL")
  if redis_url == "" then redis_url = nil end
  local secret = os.getenv("CHORUS_CALLBACK_SECRET")
  local kb_pool, kerr = db.open_kb(opts)
  if kb_pool == nil then
    io.stderr:write("chorus serve: " .. kerr .. "\n")
    return 1
  end
  local srv, err, code = require("chorus.serve").start({
    host = host, port = port, reuseport = opts.reuseport, db = db.url(opts), redis = redis_url,
    scripts = opts.scripts, sandbox = opts.sandbox, no_auth = opts["no-auth"], concurrency = n.concurrency, lease_ms = n["lease-ms"],
    max_body_bytes = n["max-body"], admin_key = os.getenv("CHORUS_ADMIN_KEY"),
    max_inflight = n["max-inflight"], max_pending = n["max-pending"], max_client_connections = n["max-client-conns"],
    callback_secret = secret ~= "" and secret or nil,
  })
  if not srv then
    io.stderr:write("chorus serve: " .. tostring(err) .. "\n")
    if kb_pool then kb_pool:close() end
    return code == "bad_scripts" and 2 or 1
  end
  local stop = sched.cond()
  local hooks = {}
  for _, sig in ipairs({ "SIGTERM", "SIGINT" }) do
    hooks[#hooks + 1] = native.on_signal(sig, function(name) stop:signal(name) end)
  end
  local why = stop:wait()
  log.info("serve: %s, shutting down", tostring(why))
  for _, h in ipairs(hooks) do h:close() end
  srv:stop({ grace_ms = n["grace-ms"] })
  if kb_pool then kb_pool:close() end
  return 0
end
