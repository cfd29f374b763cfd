-- chorus.tws.job: a job in the plan as the engine returns it (a JobInPlan
-- object of the REST API) turned into the tws agent's stable output shape,
-- and the selection of one job among a query's results.
--
--   view(job_json) -> {job_id, job_name, job_stream, job_stream_id,
--     job_stream_workstation, workstation, scheduled_time, status,
--     internal_status, return_code, start_time, end_time, priority,
--     job_number, rerun_number, last_in_rerun_chain}
--     (a value the engine did not send is json.null: every key is always
--     there)
--   label(view) -> "WS#STREAM.JOB" (conman's notation)
--   pick(jobs, sel) -> job_json | nil, err   exactly one job, or why not
--
-- Fields read tolerantly: the sources show `id`, `name`,
-- `jobStreamInPlan.{name, startTime, workstationKey.name}`,
-- `jobDefinition.jobDefinitionInPlanKey.workstationInPlanKey.name` and
-- `status.internalStatus`; the common status, return code and times are
-- read from the names listed in docs/agents.md and their known variants.
local json = require "chorus.json"

local type, tostring, ipairs = type, tostring, ipairs
local null = json.null

local M = {}

local function get(t, ...)
  for i = 1, select("#", ...) do
    if type(t) ~= "table" then return nil end
    t = t[select(i, ...)]
  end
  if t == null then return nil end
  return t
end

local function first(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v ~= nil then return v end
  end
  return null
end

-- The common status when the engine sends only the internal one (the
-- Dynamic Workload Console's mapping for distributed jobs).
local COMMON = {
  ABEND = "ERROR", ABENP = "ERROR", FAIL = "ERROR", ERROR = "ERROR",
  SUCC = "SUCCESSFUL", SUCCP = "SUCCESSFUL", DONE = "SUCCESSFUL",
  EXEC = "RUNNING", INTRO = "RUNNING", WAIT = "RUNNING", PEND = "RUNNING",
  READY = "READY", HOLD = "WAITING", SCHED = "WAITING", FENCE = "WAITING", ADD = "WAITING",
  CANCL = "CANCELED", EXTRN = "UNDECIDED", SUSP = "HELD",
}

function M.view(j)
  local status = get(j, "status")
  local internal, common
  if type(status) == "table" then
    internal = get(status, "internalStatus")
    common = first(get(status, "commonStatus"), get(status, "status"))
  elseif type(status) == "string" then
    common = status
  end
  internal = internal or get(j, "internalStatus")
  if common == nil or common == null then common = internal and COMMON[internal:upper()] or null end
  local stream = get(j, "jobStreamInPlan") or {}
  return {
    job_id = first(get(j, "id")),
    job_name = first(get(j, "name"), get(j, "jobName")),
    job_stream = first(get(stream, "name"), get(j, "jobStreamName")),
    job_stream_id = first(get(stream, "id")),
    job_stream_workstation = first(get(stream, "workstationKey", "name"), get(stream, "workstationName")),
    workstation = first(get(j, "jobDefinition", "jobDefinitionInPlanKey", "workstationInPlanKey", "name"),
      get(j, "workstationName"), get(stream, "workstationKey", "name")),
    scheduled_time = first(get(stream, "startTime"), get(stream, "scheduledTime")),
    status = common,
    internal_status = first(internal),
    return_code = first(get(j, "returnCode"), get(j, "status", "returnCode")),
    start_time = first(get(j, "actualStart"), get(j, "startTime")),
    end_time = first(get(j, "actualEnd"), get(j, "endTime")),
    priority = first(get(j, "priority")),
    job_number = first(get(j, "jobNumber")),
    rerun_number = first(get(j, "rerunNumber")),
    last_in_rerun_chain = first(get(j, "lastInRerunChain")),
  }
end

local function s(v) return v == null and "?" or tostring(v) end

function M.label(v)
  return ("%s#%s.%s"):format(s(v.job_stream_workstation), s(v.job_stream), s(v.job_name))
end

-- What the selection asked for, for messages.
function M.describe(sel)
  local parts = { "job " .. tostring(sel.job) }
  if sel.job_stream then parts[#parts + 1] = "job stream " .. sel.job_stream end
  if sel.workstation then parts[#parts + 1] = "workstation " .. sel.workstation end
  return table.concat(parts, ", ")
end

-- pick(jobs, sel) -> the one job | nil, err
function M.pick(jobs, sel, plan)
  if #jobs == 1 then return jobs[1] end
  if #jobs == 0 then
    return nil, ("%s not found in the %s plan"):format(M.describe(sel), plan or "current")
  end
  local names = {}
  for i, j in ipairs(jobs) do
    if i > 5 then names[#names + 1] = ("and %d more"):format(#jobs - 5) break end
    names[#names + 1] = M.label(M.view(j))
  end
  return nil, ("%s matches %d jobs in the plan (%s): set params.job_stream or params.workstation to choose one")
    :format(M.describe(sel), #jobs, table.concat(names, ", "))
end

return M
