-- luacheck: max line length 150 (the job logs below are quoted as engines write them)
-- fakes/tws.lua: a small HCL Workload Automation / IBM Workload Scheduler
-- engine ("twsd", the distributed engine's REST API) for the demo and the
-- specs: a current plan with a few job streams and jobs, their job logs,
-- and the actions rerun / hold / release / cancel / kill changing them as
-- the engine does. The request and response shapes follow the product's
-- REST API (docs/agents.md, "tws", lists the sources); what the sources do
-- not show is marked there as this fake's choice.
--
-- As a program (serves until SIGINT or SIGTERM):
--   build/chorus lua fakes/tws.lua --port N [--host 127.0.0.1] [--run-ms MS]
--   prints "tws fake: http://127.0.0.1:N (...)" on stdout; port 0 picks one.
--   Credentials: TWS_USER and TWS_PASSWORD from the environment (defaults
--   twsuser / twspass, printed as a reminder only when defaulted).
-- As a module (no arguments: the file returns it):
--   local fake = dofile(native.home .. "/fakes/tws.lua")
--   local srv = assert(fake.start({port = 0, user = "u", password = "p",
--                                  run_ms = 0, rerun_delay_ms = 0}))
--     run_ms: how long a rerun runs before it ends SUCC (default 1500);
--     rerun_delay_ms: how long after the PUT the new run appears (0)
--   srv.url             "http://127.0.0.1:PORT" (give it as TWS_URL)
--   srv.requests        the last 1000 requests: {method, path, headers}
--   srv:inject(fn)      fn(req) runs first on every request; when it
--                       returns a status, that is the answer (nil: normal)
--   srv:run(job_name)   the job's latest run in the plan (a table)
--   srv:close()
--
-- Endpoints (base path /twsd; {plan} must be "current"; a job id is
-- percent-encoded in the path, e.g. MASTER_CPU%3B0AAAAAAAAAAAAB1C%3BPAYROLL_DAILY):
--   POST /twsd/plan/{plan}/job/query           body {"filters": {"jobInPlanFilter":
--        {jobName, jobStreamName, workstationName, lastInRerunChain}}}
--        (names match case-insensitively; @ and * are wildcards); request
--        header How-Many caps the results; answer: a JSON array of jobs
--   GET  /twsd/plan/{plan}/job/{id}            one job
--   GET  /twsd/plan/{plan}/job/{id}/joblog     {"log": "..."} (text/plain
--        when the client asks only for text/plain)
--   PUT  /twsd/plan/{plan}/job/{id}/action/{rerun|hold|release|cancel|kill}
-- Errors: {"messages": ["..."]} with 400/401/404/405; 401 also sends
-- WWW-Authenticate: Basic.
local server = require "chorus.http.server"
local json = require "chorus.json"
local base64 = require "chorus.base64"
local sched = require "chorus.sched"

local M = {}

local BASE = "/twsd"
local JSON = { ["content-type"] = "application/json" }

-- ---------------------------------------------------------------------------
-- The plan

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", math.floor(t))
end

local function stdlist_header(job, user, command, number, t)
  return table.concat({
    "===============================================================",
    ("= JOB       : %s#%s[(%s),(%s)].%s"):format(job.stream.workstation, job.stream.name,
      os.date("!%H%M %m/%d/%y", math.floor(job.stream.start)), job.stream.id, job.name),
    "= USER      : " .. user,
    "= JCLFILE   : " .. command,
    "= Job Number: " .. number,
    "= " .. os.date("!%a %m/%d/%y %H:%M:%S UTC", math.floor(t)),
    "===============================================================",
  }, "\n") .. "\n"
end

local function stdlist_footer(rc, started, ended)
  local el = math.max(0, math.floor(ended - started))
  return table.concat({
    "===============================================================",
    "= Exit Status           : " .. tostring(rc),
    ("= Elapsed Time (hh:mm:ss) : %02d:%02d:%02d"):format(el / 3600, el % 3600 / 60, el % 60),
    "= " .. os.date("!%a %m/%d/%y %H:%M:%S UTC", math.floor(ended)),
    "===============================================================",
  }, "\n") .. "\n"
end

local PAYROLL_BODY = [[
run_payroll.sh: starting payroll batch for the current period
run_payroll.sh: connecting to database PAYDB as PAYBATCH
[02:00:07] step 1/4 EXTRACT_TIMESHEETS  rows=48211  OK
[02:01:12] step 2/4 COMPUTE_GROSS       rows=48211  OK
[02:01:13] step 3/4 UPDATE_LEDGER       begin
[02:03:41] SQL0911N  The current transaction has been rolled back because of a deadlock or timeout.  Reason code "2".  SQLSTATE=40001
[02:03:41] UPDATE_LEDGER: statement UPDATE PAYROLL.LEDGER SET AMOUNT = ? WHERE EMP_ID = ? failed
[02:03:41] UPDATE_LEDGER: lock holder: application BACKUP_NIGHTLY (agent id 3112) on table PAYROLL.LEDGER
[02:04:01] UPDATE_LEDGER: retries exhausted (3), rolling back
run_payroll.sh: step UPDATE_LEDGER failed, exit 12
]]

local BACKUP_BODY = [[
backup_db.sh: online backup of PAYDB to /backup/paydb
SQL2501I  The database was successfully backed up.  Timestamp for this backup image is : 20261124010002
backup_db.sh: pruning images older than 14 days: 1 removed
]]

local ETL_BODY = [[
etl_load.sh: loading sales feed 2026-11-24 (12 files)
[02:30:02] file 1/12 sales_eu.csv   rows=210344  OK
[02:41:19] file 2/12 sales_us.csv   rows=388120  OK
[02:55:40] file 3/12 sales_apac.csv in progress
]]

-- A fresh plan: job streams and jobs as they are at `t0` (wall seconds).
local function new_plan(t0)
  local day = t0 - t0 % 86400
  local streams = {
    PAYROLL = { name = "PAYROLL_JS", workstation = "MASTER_CPU", id = "0AAAAAAAAAAAAB1C", start = day + 2 * 3600 },
    BACKUP = { name = "BACKUP_JS", workstation = "DB_SERVER", id = "0AAAAAAAAAAAAB1D", start = day + 3600 },
    REPORTS = { name = "REPORTS_JS", workstation = "MASTER_CPU", id = "0AAAAAAAAAAAAB1E", start = day + 6 * 3600 },
    ETL = { name = "ETL_JS", workstation = "ETL_AGT", id = "0AAAAAAAAAAAAB1F", start = day + 2.5 * 3600 },
    BILLING = { name = "BILLING_JS", workstation = "MASTER_CPU", id = "0AAAAAAAAAAAAB20", start = day + 7 * 3600 },
    HOUSE_A = { name = "HOUSEKEEPING_JS", workstation = "MASTER_CPU", id = "0AAAAAAAAAAAAB21", start = day + 5 * 3600 },
    HOUSE_B = { name = "HOUSEKEEPING_JS", workstation = "DB_SERVER", id = "0AAAAAAAAAAAAB22", start = day + 5 * 3600 },
  }
  local jobs = {
    { name = "PAYROLL_DAILY", stream = streams.PAYROLL, workstation = "PAYROLL_AGT", user = "payroll",
      command = "/opt/payroll/bin/run_payroll.sh", status = "ERROR", internal = "ABEND", rc = 12,
      start = streams.PAYROLL.start + 4, finish = streams.PAYROLL.start + 242, body = PAYROLL_BODY },
    { name = "BACKUP_NIGHTLY", stream = streams.BACKUP, workstation = "DB_SERVER", user = "db2inst1",
      command = "/opt/db/bin/backup_db.sh", status = "SUCCESSFUL", internal = "SUCC", rc = 0,
      start = streams.BACKUP.start + 2, finish = streams.BACKUP.start + 3901, body = BACKUP_BODY },
    { name = "REPORT_MONTHLY", stream = streams.REPORTS, workstation = "MASTER_CPU", user = "reports",
      command = "/opt/reports/bin/monthly.sh", status = "HELD", internal = "HOLD", priority = 0 },
    { name = "ETL_LOAD", stream = streams.ETL, workstation = "ETL_AGT", user = "etl",
      command = "/opt/etl/bin/etl_load.sh", status = "RUNNING", internal = "EXEC",
      start = streams.ETL.start + 2, body = ETL_BODY },
    { name = "INVOICE_PRINT", stream = streams.BILLING, workstation = "MASTER_CPU", user = "billing",
      command = "/opt/billing/bin/print_invoices.sh", status = "READY", internal = "READY" },
    { name = "CLEANUP_TMP", stream = streams.HOUSE_A, workstation = "MASTER_CPU", user = "root",
      command = "/usr/local/bin/cleanup_tmp.sh", status = "WAITING", internal = "HOLD" },
    { name = "CLEANUP_TMP", stream = streams.HOUSE_B, workstation = "DB_SERVER", user = "root",
      command = "/usr/local/bin/cleanup_tmp.sh", status = "WAITING", internal = "HOLD" },
  }
  local runs, number = {}, 41870
  for _, j in ipairs(jobs) do
    number = number + 1
    local run = {
      id = ("%s;%s;%s"):format(j.stream.workstation, j.stream.id, j.name),
      name = j.name, stream = j.stream, workstation = j.workstation, user = j.user,
      command = j.command, status = j.status, internal = j.internal, rc = j.rc,
      start = j.start, finish = j.finish, priority = j.priority or 10, number = number,
      last = true, rerun_of = nil, reruns = 0,
    }
    if j.start then
      run.log = stdlist_header(run, j.user, j.command, number, j.start) .. (j.body or "")
      if j.finish then run.log = run.log .. stdlist_footer(j.rc, j.start, j.finish) end
    end
    runs[#runs + 1] = run
  end
  return { runs = runs, number = number }
end

-- ---------------------------------------------------------------------------
-- Requests

local function messages(status, ...)
  return status, JSON, { messages = { ... } }
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- TWS object names match without case; @ and * match any run of characters.
local function name_pattern(s)
  local p = s:upper():gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("[@*]", ".*")
  return "^" .. p .. "$"
end

local function matches(value, filter)
  if filter == nil or filter == json.null then return true end
  if type(filter) ~= "string" then return false end
  return value:upper():find(name_pattern(filter)) ~= nil
end

local function job_json(run)
  return {
    id = run.id,
    name = run.name,
    jobStreamInPlan = {
      id = run.stream.workstation .. ";" .. run.stream.id,
      name = run.stream.name,
      startTime = iso(run.stream.start),
      workstationKey = { name = run.stream.workstation },
    },
    jobDefinition = {
      name = run.name,
      jobDefinitionInPlanKey = { name = run.name, workstationInPlanKey = { name = run.workstation } },
    },
    status = { commonStatus = run.status, internalStatus = run.internal },
    returnCode = run.rc,
    priority = run.priority,
    actualStart = run.start and iso(run.start) or nil,
    actualEnd = run.finish and run.internal ~= "EXEC" and iso(run.finish) or nil,
    jobNumber = run.start and run.number or nil,
    lastInRerunChain = run.last,
    rerunNumber = run.reruns,
  }
end

local Fake = {}
Fake.__index = Fake

-- A rerun that runs run_ms ends SUCC the first time it is looked at after.
function Fake:_settle(run)
  if run.internal == "EXEC" and run.ends_at and sched.now() >= run.ends_at then
    run.internal, run.status, run.rc = "SUCC", "SUCCESSFUL", 0
    run.finish = sched.time()
    run.ends_at = nil
    local prog = run.command:match("[^/]+$")
    run.log = run.log .. prog .. ": all steps completed\n" .. stdlist_footer(0, run.start, run.finish)
  end
  return run
end

function Fake:_find(id)
  for _, r in ipairs(self.plan.runs) do
    if r.id == id then return self:_settle(r) end
  end
end

function Fake:run(name)
  local found
  for _, r in ipairs(self.plan.runs) do
    if r.name == name and r.last then found = self:_settle(r) end
  end
  return found
end

local ENDED = { ABEND = true, SUCC = true, FAIL = true, CANCL = true, DONE = true }
local NOT_STARTED = { READY = true, HOLD = true, SCHED = true, WAIT = true, FENCE = true }

local function label(run)
  return ("%s#%s.%s"):format(run.stream.workstation, run.stream.name, run.name)
end

function Fake:_rerun(run)
  if not ENDED[run.internal] then
    return messages(400, ("The job %s cannot be rerun: its status is %s; only a job that has ended can be rerun.")
      :format(label(run), run.internal))
  end
  local plan = self.plan
  plan.number = plan.number + 1
  local n = run.reruns + 1
  local new = {}
  for k, v in pairs(run) do new[k] = v end
  local first_id = run.rerun_of or run.id
  new.id, new.rerun_of, new.reruns, new.last = first_id .. ";" .. (n + 1), first_id, n, true
  new.number, new.rc, new.finish = plan.number, nil, nil
  new.start = sched.time()
  new.internal, new.status = "EXEC", "RUNNING"
  new.ends_at = sched.now() + self.run_ms
  new.log = stdlist_header(new, run.user, run.command, new.number, new.start)
    .. run.command:match("[^/]+$") .. ": rerun requested by " .. self.user .. "\n"
  local function commit()
    run.last = false
    plan.runs[#plan.runs + 1] = new
    new.start = sched.time()
    new.ends_at = sched.now() + self.run_ms
    self:_settle(new)
  end
  if self.rerun_delay_ms > 0 then
    -- Engines queue the command: the new run shows up a moment later.
    sched.spawn_with({ detached = true }, function()
      sched.sleep(self.rerun_delay_ms)
      commit()
    end)
  else
    commit()
  end
  return 200, JSON, ""
end

function Fake:_hold(run)
  if run.status == "HELD" then
    return messages(400, ("The job %s is already held."):format(label(run)))
  end
  if not NOT_STARTED[run.internal] then
    return messages(400, ("The job %s cannot be held: its status is %s."):format(label(run), run.internal))
  end
  run.saved_priority = run.priority
  run.priority, run.status, run.internal = 0, "HELD", "HOLD"
  return 200, JSON, ""
end

function Fake:_release(run)
  if run.status ~= "HELD" then
    return messages(400, ("The job %s is not held: its status is %s."):format(label(run), run.internal))
  end
  run.priority = run.saved_priority or 10
  run.status, run.internal = "READY", "READY"
  return 200, JSON, ""
end

function Fake:_cancel(run)
  if run.internal == "EXEC" then
    return messages(400, ("The job %s is running: kill it before cancelling it."):format(label(run)))
  end
  if ENDED[run.internal] then
    return messages(400, ("The job %s has already ended (%s)."):format(label(run), run.internal))
  end
  run.status, run.internal = "CANCELED", "CANCL"
  return 200, JSON, ""
end

function Fake:_kill(run)
  if run.internal ~= "EXEC" then
    return messages(400, ("The job %s is not running: its status is %s."):format(label(run), run.internal))
  end
  run.status, run.internal, run.ends_at = "ERROR", "ABEND", nil
  run.finish = sched.time()
  run.log = (run.log or "") .. "JOB KILLED BY USER " .. self.user .. "\n" .. stdlist_footer("KILLED", run.start, run.finish)
  return 200, JSON, ""
end

local ACTIONS = { rerun = Fake._rerun, hold = Fake._hold, release = Fake._release,
  cancel = Fake._cancel, kill = Fake._kill }

function Fake:_query(req)
  if req.method ~= "POST" then return messages(405, "The method " .. req.method .. " is not allowed on this resource.") end
  local body, err = json.decode(req.body ~= "" and req.body or "{}")
  if type(body) ~= "table" then return messages(400, "The request body is not valid JSON: " .. tostring(err)) end
  local filters = type(body.filters) == "table" and body.filters or {}
  local f = type(filters.jobInPlanFilter) == "table" and filters.jobInPlanFilter or {}
  local how_many = 500
  local hm = req.headers["how-many"]
  if hm then
    how_many = tonumber(hm)
    if not how_many or how_many < 1 or how_many % 1 ~= 0 then
      return messages(400, "The How-Many header must be a positive whole number, not '" .. hm .. "'.")
    end
  end
  local out = json.array()
  for _, r in ipairs(self.plan.runs) do
    self:_settle(r)
    if matches(r.name, f.jobName) and matches(r.stream.name, f.jobStreamName)
      and (matches(r.workstation, f.workstationName) or matches(r.stream.workstation, f.workstationName))
      and (f.lastInRerunChain ~= true or r.last) and #out < how_many then
      out[#out + 1] = job_json(r)
    end
  end
  return 200, JSON, out
end

function Fake:_job(req, id, sub, action)
  local run = self:_find(id)
  if not run then
    return messages(404, ("The job with identifier %s was not found in the plan."):format(id))
  end
  if sub == nil then
    if req.method ~= "GET" then return messages(405, "The method " .. req.method .. " is not allowed on this resource.") end
    return 200, JSON, job_json(run)
  elseif sub == "joblog" then
    if req.method ~= "GET" then return messages(405, "The method " .. req.method .. " is not allowed on this resource.") end
    if not run.log then
      return messages(404, ("The job %s has not started: no job log is available."):format(label(run)))
    end
    local accept = req.headers["accept"] or ""
    if accept:find("text/plain", 1, true) and not accept:find("json", 1, true) then
      return 200, { ["content-type"] = "text/plain; charset=utf-8" }, run.log
    end
    return 200, JSON, { log = run.log }
  elseif sub == "action" then
    if req.method ~= "PUT" then return messages(405, "The method " .. req.method .. " is not allowed on this resource.") end
    local fn = ACTIONS[action or ""]
    if not fn then return messages(404, "Unknown action '" .. tostring(action) .. "'.") end
    return fn(self, run)
  end
  return messages(404, "No resource at " .. req.path .. ".")
end

function Fake:_authorized(req)
  local auth = req.headers["authorization"]
  local b64 = auth and auth:match("^[Bb]asic%s+(%S+)%s*$")
  local decoded = b64 and base64.decode(b64)
  return decoded ~= nil and decoded == self.user .. ":" .. self.password
end

function Fake:handle(req)
  local log = self.requests
  if #log >= 1000 then table.remove(log, 1) end
  log[#log + 1] = { method = req.method, path = req.path, headers = req.headers, body = req.body }
  if self.injected then
    local status, headers, body = self.injected(req)
    if status then return status, headers, body end
  end
  if not self:_authorized(req) then
    return 401, { ["content-type"] = "application/json", ["www-authenticate"] = 'Basic realm="TWS REST API"' },
      { messages = { "The user is not authenticated: the credentials are missing or wrong." } }
  end
  local rest = req.path:sub(1, #BASE + 1) == BASE .. "/" and req.path:sub(#BASE + 1)
  local plan, tail = (rest or ""):match("^/plan/([^/]+)/job(.*)$")
  if not plan then return messages(404, "No resource at " .. req.path .. ".") end
  if unescape(plan) ~= "current" then
    return messages(404, ("The plan %s was not found: only the current plan is available."):format(unescape(plan)))
  end
  if tail == "/query" then return self:_query(req) end
  local id, sub, action = tail:match("^/([^/]+)/?([^/]*)/?([^/]*)$")
  if not id then return messages(404, "No resource at " .. req.path .. ".") end
  return self:_job(req, unescape(id), sub ~= "" and sub or nil, action ~= "" and action or nil)
end

function Fake:inject(fn) self.injected = fn end

function Fake:close(opts) return self.srv:close(opts) end

-- start({port, host, user, password, run_ms}) -> fake | nil, err
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({
    user = opts.user or "twsuser", password = opts.password or "twspass",
    run_ms = opts.run_ms or 1500, rerun_delay_ms = opts.rerun_delay_ms or 0, requests = {},
    plan = new_plan(sched.time()),
  }, Fake)
  local srv, err = server.listen({ host = opts.host or "127.0.0.1", port = opts.port or 0,
    max_body_bytes = 1024 * 1024 }, function(req) return self:handle(req) end)
  if not srv then return nil, err end
  self.srv, self.port = srv, srv.port
  self.url = ("http://%s:%d"):format(srv.host, srv.port)
  return self
end

-- The program: flags, then serve until a signal.
local function main(argv)
  local opts, i = {}, 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    if a == "--port" and v then opts.port = tonumber(v)
    elseif a == "--host" and v then opts.host = v
    elseif a == "--run-ms" and v then opts.run_ms = tonumber(v)
    else
      io.stderr:write("usage: chorus lua fakes/tws.lua --port N [--host H] [--run-ms MS]\n")
      return 2
    end
    i = i + 2
  end
  if opts.port == nil then io.stderr:write("tws fake: --port N is required (0 picks one)\n") return 2 end
  local defaulted = not (os.getenv("TWS_USER") and os.getenv("TWS_PASSWORD"))
  opts.user, opts.password = os.getenv("TWS_USER"), os.getenv("TWS_PASSWORD")
  if defaulted then opts.user, opts.password = nil, nil end
  local fake, err = M.start(opts)
  if not fake then io.stderr:write("tws fake: " .. tostring(err) .. "\n") return 1 end
  io.stdout:write(("tws fake: %s (%s)\n"):format(fake.url, defaulted
    and "TWS_USER/TWS_PASSWORD not both set: demo credentials twsuser / twspass"
    or "credentials from TWS_USER/TWS_PASSWORD"))
  io.stdout:flush()
  local stop = sched.cond()
  local native = require "chorus.native"
  local hooks = { native.on_signal("SIGINT", function() stop:signal() end),
    native.on_signal("SIGTERM", function() stop:signal() end) }
  stop:wait()
  for _, h in ipairs(hooks) do h:close() end
  fake:close({ grace_ms = 1000 })
  return 0
end

if select("#", ...) > 0 then return main({ ... }) end
return M
