-- spec/support/serve.lua: a real `chorus serve` process for specs that
-- drive it from outside (the CLI's), and the binary run as a user runs it.
--
--   local srv = require "spec.support.serve"
--   local s = srv.start("--db URL", { CHORUS_ADMIN_KEY = key })
--     -> {port, pid, log, base}   (port 0: a free one)
--   srv.stop(s)                    SIGTERM, waits for the exit
--   srv.log(s) -> what it wrote so far (stdout and stderr)
--   srv.chorus("executions list", { CHORUS_API_KEY = key }) -> code, stdout, stderr
--     (blocks the loop: the server is another process)
--   srv.spawn_chorus(args, env) -> {pid, out, err}: one in the background
--     (chorus events), read with srv.slurp(path); srv.kill(job)
local h = require "spec.helpers"

local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end
M.q = q

function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- env_prefix(env) -> "env -u A B=1 ... " (false unsets a variable)
local function env_prefix(env)
  local unset, set, names = {}, {}, {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = env[k]
    if v == false then unset[#unset + 1] = "-u " .. k else set[#set + 1] = k .. "=" .. q(v) end
  end
  -- The CLI's own variables never leak in from the environment the specs run in.
  for _, k in ipairs({ "CHORUS_SERVER", "CHORUS_API_KEY", "DATABASE_URL", "NO_COLOR" }) do
    if env == nil or env[k] == nil then unset[#unset + 1] = "-u " .. k end
  end
  return "env " .. table.concat(unset, " ") .. " " .. table.concat(set, " ") .. " "
end
M.env_prefix = env_prefix

function M.start(args, env, port)
  local log = os.tmpname()
  local pid = h.spawn(("%s%s serve --listen 127.0.0.1:%d %s"):format(env_prefix(env), h.binary, port or 0, args or ""), log)
  local p
  assert(h.wait_until(function()
    p = tonumber(M.slurp(log):match("listening on 127%.0%.0%.1:(%d+)"))
    return p ~= nil or not h.alive(pid)
  end, 15000), "serve did not start")
  assert(p, "serve failed: " .. M.slurp(log))
  return { port = p, pid = pid, log = log, base = "http://127.0.0.1:" .. p }
end

function M.log(s) return M.slurp(s.log) end

function M.stop(s)
  if not h.alive(s.pid) then return end
  h.kill(s.pid, "TERM")
  assert(h.wait_exit(s.pid, 20000), "serve did not exit")
end

function M.chorus(args, env)
  return h.sh(("cd %s && %s%s %s"):format(h.root, env_prefix(env), h.binary, args))
end

function M.spawn_chorus(args, env)
  local out, err, rc, pidfile = os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()
  os.remove(rc)
  os.remove(pidfile)
  -- env execs chorus: $! is its pid; its exit status lands in rc.
  assert(os.execute(("(cd %s && { %s%s %s >%s 2>%s </dev/null & echo $! >%s.tmp; mv %s.tmp %s; wait $!; "
    .. "echo $? >%s.tmp; mv %s.tmp %s; }) >/dev/null 2>&1 &"):format(h.root, env_prefix(env), h.binary, args, out, err,
    pidfile, pidfile, pidfile, rc, rc, rc)) == 0)
  local pid
  assert(h.wait_until(function()
    pid = tonumber(M.slurp(pidfile):match("%d+"))
    return pid ~= nil
  end, 5000), "chorus did not start")
  os.remove(pidfile)
  return { pid = pid, out = out, err = err, rc = rc }
end

-- wait_job(job, ms) -> exit code once it exited, else nil
function M.wait_job(job, ms)
  local code
  h.wait_until(function()
    code = tonumber(M.slurp(job.rc):match("%d+"))
    return code ~= nil
  end, ms or 10000)
  return code
end

return M
