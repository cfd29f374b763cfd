-- action_handler: an action on a Workload Scheduler job (rerun, hold,
-- release, cancel, kill) through the tws agent: the plan's last handler.
-- The action is params.action, else the execution input's `action`; the
-- job is params.job (a template), else the input's `target`, else its
-- job_name. It changes production: the step needs `approval: true` (the
-- execution waits for a person) unless settings.allow_unapproved_actions
-- is true, and validation says so.
-- Output: the tws agent's action shape (action, job, before, after,
-- new_job_id, approved_by, message; docs/agents.md).
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"

local ACTIONS = { "rerun", "hold", "release", "cancel", "kill" }

local function approved(step, settings)
  return step.approval == true or (type(settings) == "table" and settings.allow_unapproved_actions == true)
end

local function tws_params(p, action, job)
  return handler.merge(p.tws, { operation = "action", action = action, job = job,
    job_stream = p.job_stream, workstation = p.workstation })
end

return {
  name = "action_handler",
  version = "1.0.0",
  description = "An action on a Workload Scheduler job (tws action); needs approval.",
  schema = { fields = {
    action = { type = "string", enum = ACTIONS, description = "the action (default: the input's `action`)" },
    job = { type = "string", min_len = 1, description = "job name, a template (default: the input's `target`, else `job_name`)" },
    job_stream = { type = "string", min_len = 1, description = "job stream name (template)" },
    workstation = { type = "string", min_len = 1, description = "workstation (template)" },
    tws = { type = "object", additional = true, description = "more params for the tws agent (connection, rerun_wait_ms...)" },
  } },

  check_step = function(step, view)
    if not approved(step, view.settings) then
      return { { path = "approval", message = ("the action_handler runs a Workload Scheduler action (%s) that changes "
        .. "the plan: set approval: true on this step, or settings.allow_unapproved_actions: true"):format(
          tostring(step.params and step.params.action or "from the input's action")) } }
    end
    local p = step.params or {}
    return view.check_agent(step, "tws", tws_params(p, p.action or ACTIONS[1], p.job or "{{target}}"))
  end,

  call = function(input, ctx)
    local p = ctx.params
    local action = p.action or input.action
    if type(action) ~= "string" then
      return handler.fail("action_handler", ctx, "no action: set params.action or give the input an `action` "
        .. "(rerun, hold, release, cancel or kill)", { retry = false })
    end
    local job = p.job
    if not job then
      local name = input.target or input.job_name
      if type(name) ~= "string" or not name:find("%S") then
        return handler.fail("action_handler", ctx, "no job: set params.job or give the input a `target` or `job_name`",
          { retry = false })
      end
      -- the name is data, not a template: it reaches the tws agent
      -- through the input, next to the rest of it
      input = setmetatable({ action_target = name }, { __index = input })
      job = "{{action_target}}"
    end
    return ctx:call("tws", tws_params(p, action, job), input)
  end,
}
