-- status_handler: a job's status in the Workload Scheduler's current plan
-- (the plan's first handler), through the tws agent. The job is named by
-- the execution input's job_name unless params.job says otherwise.
-- Output: the tws agent's status shape (job_name, job_stream, workstation,
-- status, internal_status, return_code, times...; docs/agents.md).
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"

local TWS = { type = "object", additional = true,
  description = "more params for the tws agent: url, url_env, user_env, password_env, ca_file, timeout_ms..." }

-- The tws agent's params for this step: the handler's fields win.
local function tws_params(p)
  return handler.merge(p.tws, { operation = "status", job = p.job, job_stream = p.job_stream,
    workstation = p.workstation })
end

return {
  name = "status_handler",
  version = "1.0.0",
  description = "A job's status in the Workload Scheduler plan (tws status).",
  schema = { fields = {
    job = { type = "string", default = "{{job_name}}", min_len = 1,
      description = "job name: a template over the step input" },
    job_stream = { type = "string", min_len = 1, description = "job stream name (template), when the job name is not enough" },
    workstation = { type = "string", min_len = 1, description = "workstation (template)" },
    tws = TWS,
  } },

  check_step = function(step, view)
    return view.check_agent(step, "tws", tws_params(step.params or {}))
  end,

  call = function(input, ctx)
    return ctx:call("tws", tws_params(ctx.params), input)
  end,
}
