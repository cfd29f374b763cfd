-- tws: an HCL Workload Automation / IBM Workload Scheduler engine through
-- its REST API (the distributed engine, /twsd): a job's status in the
-- current plan, its job log, or an action on it (rerun, hold, release,
-- cancel, kill). Connection from TWS_URL, TWS_USER, TWS_PASSWORD and
-- TWS_CA_FILE (params may name other variables, never hold the password).
-- Params, output shapes and the API's sources: docs/agents.md ("tws").
--
-- Actions change production: they need `approval: true` on the step (the
-- run waits for a person) unless the config's settings say
-- allow_unapproved_actions: true. Checked when the config is validated
-- and again before the request is sent.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local client = lazy "chorus.tws.client"
local jobmod = lazy "chorus.tws.job"
local template = require "chorus.template"
local text = lazy "chorus.text"
local json = require "chorus.json"
local sched = require "chorus.sched"

local format = string.format

local NO_RETRY = { retry = false }
local OPERATIONS = { status = true, log = true, action = true }
local ACTIONS = { rerun = true, hold = true, release = true, cancel = true, kill = true }
local ENV_NAME = { type = "string", pattern = "^[%a_][%w_]*$", pattern_help = "an environment variable name" }

local function env_name(description)
  local s = {}
  for k, v in pairs(ENV_NAME) do s[k] = v end
  s.description = description
  return s
end

local function approval_source(step, settings)
  if step.approval then return "step" end
  if type(settings) == "table" and settings.allow_unapproved_actions == true then
    return "settings.allow_unapproved_actions"
  end
  return nil
end

-- Fails the attempt: every message says which step and that it is tws.
local function fail(ctx, msg, info)
  if msg == "cancelled" then return nil, msg end
  return nil, format("tws (step %s): %s", tostring(ctx.step_id), msg), info
end

-- The job selection, rendered from the step input.
local function selection(p, input)
  local sel = {}
  for _, f in ipairs({ "job", "job_stream", "workstation" }) do
    local v = p[f]
    if v ~= nil then
      local r, err = template.render(v, input, "params." .. f)
      if r == nil then return nil, err end
      if type(r) ~= "string" then r = tostring(r) end
      r = r:match("^%s*(.-)%s*$")
      if r == "" then
        if f == "job" then return nil, "params.job rendered to an empty job name (" .. v .. ")" end
        r = nil
      end
      sel[f] = r
    end
  end
  return sel
end

-- Finds the one job the step means; returns conn, job_json.
local function find_job(p, input, ctx)
  local sel, err = selection(p, input)
  if not sel then return fail(ctx, err, NO_RETRY) end
  local conn, cerr, cinfo = client.connect(p, { traceparent = ctx:traceparent(), step_id = ctx.step_id,
    attempt = ctx.attempt, trace_id = ctx.trace_id })
  if not conn then return fail(ctx, cerr, cinfo) end
  local jobs, qerr, qinfo = conn:query_jobs(sel, 50)
  if not jobs then return fail(ctx, qerr, qinfo) end
  local job, perr = jobmod.pick(jobs, sel, p.plan)
  if not job then return fail(ctx, perr, NO_RETRY) end
  return conn, job, sel
end

local function status_output(conn, job)
  local v = jobmod.view(job)
  v.engine = conn.engine
  return v
end

local function log_output(p, conn, job, ctx)
  local v = jobmod.view(job)
  local id = v.job_id
  if id == json.null then return fail(ctx, "the engine's job has no id", NO_RETRY) end
  local log, err, info = conn:job_log(id, "the job log of " .. jobmod.label(v))
  if not log then return fail(ctx, err, info) end
  local kept, truncated = text.tail(log, p.max_log_bytes or 65536)
  kept = text.utf8_clean(kept)
  v.engine = conn.engine
  return {
    job = v,
    text = kept,
    lines = json.array(text.lines(kept)),
    truncated = truncated,
    total_bytes = #log,
    returned_bytes = #kept,
  }
end

-- After a rerun the job's new run is the last in its rerun chain. An
-- engine may add it a moment after answering: the chain is read again
-- every 250 ms for up to params.rerun_wait_ms; if the new run has not
-- appeared by then, the old one is reported (new_job_id null).
local function rerun_result(p, conn, before, ctx)
  local deadline = sched.now() + (p.rerun_wait_ms or 3000)
  while true do
    local jobs, err, info = conn:query_jobs({ job = before.job_name, job_stream = before.job_stream,
      workstation = before.workstation ~= json.null and before.workstation or nil }, 50)
    if not jobs then return fail(ctx, "the rerun was accepted, but reading the new run failed: " .. err, info) end
    local same = {}
    for _, j in ipairs(jobs) do
      local v = jobmod.view(j)
      if before.job_stream_id == json.null or v.job_stream_id == before.job_stream_id then same[#same + 1] = j end
    end
    if #same > 1 then
      return fail(ctx, format("the rerun was accepted, but %d runs of %s are last in their rerun chain",
        #same, jobmod.label(before)), NO_RETRY)
    end
    local newest = same[1]
    if newest and jobmod.view(newest).job_id ~= before.job_id then return newest end
    if sched.now() >= deadline then
      if newest then return newest end
      return fail(ctx, format("the rerun was accepted, but %s is no longer in the plan", jobmod.label(before)), NO_RETRY)
    end
    local ok, why = sched.sleep(250)
    if not ok then return nil, why end
  end
end

local function action_output(p, step, conn, job, ctx)
  local before = jobmod.view(job)
  local id, label = before.job_id, jobmod.label(before)
  if id == json.null then return fail(ctx, "the engine's job has no id", NO_RETRY) end
  local ok, err, info = conn:action(id, p.action, label)
  if not ok then return fail(ctx, err, info) end
  local after_json
  if p.action == "rerun" then
    after_json, err, info = rerun_result(p, conn, before, ctx)
    if not after_json then return nil, err, info end
  else
    after_json, err, info = conn:get_job(id, label)
    if not after_json then
      return fail(ctx, format("the %s of %s was accepted, but reading the job again failed: %s", p.action, label, err), info)
    end
  end
  local after = jobmod.view(after_json)
  after.engine = conn.engine
  return {
    action = p.action,
    job = label,
    job_id = id,
    approved_by = approval_source(step, ctx.settings),
    before = { status = before.status, internal_status = before.internal_status, return_code = before.return_code },
    after = after,
    new_job_id = after.job_id ~= id and after.job_id or json.null,
    message = (p.action == "rerun" and after.job_id == id)
      and format("rerun of %s accepted by the engine; its new run was not in the plan after %d ms", label,
        p.rerun_wait_ms or 3000)
      or format("%s of %s accepted by the engine: now %s (%s)", p.action, label,
        tostring(after.status), tostring(after.internal_status)),
  }
end

return {
  name = "tws",
  version = "1.0.0",
  description = "Workload Scheduler REST API: a job's status, its job log, or an action on it.",
  schema = { fields = {
    operation = { type = "string", required = true, enum = { "status", "log", "action" },
      description = "status: the job in the plan; log: its job log; action: rerun/hold/release/cancel/kill" },
    action = { type = "string", enum = { "rerun", "hold", "release", "cancel", "kill" },
      description = "with operation: action" },
    job = { type = "string", default = "{{job_name}}", min_len = 1, max_len = 2000,
      description = "job name (a template over the step input)" },
    job_stream = { type = "string", min_len = 1, max_len = 2000, description = "job stream name (template)" },
    workstation = { type = "string", min_len = 1, max_len = 2000,
      description = "workstation of the job or of its job stream (template)" },
    plan = { type = "string", default = "current", min_len = 1, max_len = 200, description = "plan id" },
    url = { type = "string", max_len = 2048, pattern = "^https?://[^%s]+$", pattern_help = "an http:// or https:// URL",
      description = "engine URL (default: $TWS_URL)" },
    url_env = env_name("variable holding the engine URL (default TWS_URL)"),
    user_env = env_name("variable holding the user (default TWS_USER)"),
    password_env = env_name("variable holding the password (default TWS_PASSWORD)"),
    ca_file_env = env_name("variable holding the CA file path (default TWS_CA_FILE)"),
    ca_file = { type = "string", min_len = 1, max_len = 4096,
      description = "PEM file of the CAs to trust (default: $TWS_CA_FILE)" },
    base_path = { type = "string", default = "/twsd", max_len = 200, pattern = "^/[%w%-%._~/]*$",
      pattern_help = "a path such as /twsd", description = "the REST API's path on the engine" },
    timeout_ms = { type = "integer", default = 30000, min = 1, max = 600000, description = "per request" },
    max_response_bytes = { type = "integer", default = 4194304, min = 1024, max = 268435456,
      description = "an answer larger than this fails the step" },
    rerun_wait_ms = { type = "integer", default = 3000, min = 0, max = 60000,
      description = "how long a rerun waits for the new run to appear in the plan" },
    max_log_bytes = { type = "integer", default = 65536, min = 256, max = 16777216,
      description = "the job log's tail kept in the output (truncated = true when cut)" },
    password = { type = "any", description = "refused: the password is read from the environment only" },
  } },

  check_step = function(step, cfg)
    local errs, p = {}, step.params or {}
    if p.password ~= nil then
      errs[#errs + 1] = { path = "params.password", message =
        "a password never goes in a config: the tws agent reads it from TWS_PASSWORD "
          .. "(params.password_env names another variable)" }
    end
    if p.operation == "action" then
      if p.action == nil then
        errs[#errs + 1] = { path = "params.action",
          message = "operation 'action' needs params.action: rerun, hold, release, cancel or kill" }
      end
      if not approval_source(step, cfg and cfg.settings) then
        errs[#errs + 1] = { path = "approval", message = format(
          "a tws action (%s) changes the plan: set approval: true on this step, or settings.allow_unapproved_actions: true",
          tostring(p.action or "action")) }
      end
    elseif p.action ~= nil then
      errs[#errs + 1] = { path = "params.action", message = "params.action is read only with operation: action" }
    end
    for _, f in ipairs({ "job", "job_stream", "workstation" }) do
      if type(p[f]) == "string" then
        local paths = template.placeholders(p[f])
        for _, e in ipairs(template.check_paths(step, cfg and cfg.steps_by_id or {}, paths, "params." .. f)) do
          errs[#errs + 1] = e
        end
      end
    end
    return errs
  end,

  call = function(input, ctx, step)
    local p = ctx.params or {}
    local op = p.operation
    if not OPERATIONS[op] then
      return fail(ctx, format("unknown operation '%s': use status, log or action", tostring(op)), NO_RETRY)
    end
    if op == "action" then
      if not ACTIONS[p.action] then
        return fail(ctx, format("unknown action '%s': use rerun, hold, release, cancel or kill", tostring(p.action)), NO_RETRY)
      end
      -- Validation said so already; a config changed behind its back (or
      -- a step built in code) is stopped here, before anything is sent.
      if not approval_source(step, ctx.settings) then
        return fail(ctx, format("the %s action needs approval: set approval: true on the step, "
          .. "or settings.allow_unapproved_actions: true", p.action), NO_RETRY)
      end
    end
    local conn, job, info = find_job(p, input, ctx)
    if not conn then return nil, job, info end
    if op == "status" then return status_output(conn, job) end
    if op == "log" then return log_output(p, conn, job, ctx) end
    return action_output(p, step, conn, job, ctx)
  end,
}
