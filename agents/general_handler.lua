-- general_handler: a question answered by the model (llm, streamed by
-- default), for what the other handlers do not cover. The message is
-- params.prompt (a template; default: the input's message), with the
-- system prompt below (edit it here: the file hot-reloads; or set
-- params.system per step).
-- Output: {response, finish_reason}; docs/agents.md.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"

local SYSTEM = [[
You are the assistant of a team that runs IBM Workload Scheduler (HCL Workload Automation)
and the batch workloads on it. Answer the operator's question briefly and concretely. When
a question needs data you were not given (a job's status or log), say which.
]]

local function llm_params(p)
  return handler.merge({ stream = true }, p.llm, { system = p.system or SYSTEM, prompt = p.prompt })
end

return {
  name = "general_handler",
  version = "1.0.0",
  description = "A question answered by the model (llm, streamed).",
  schema = { fields = {
    prompt = { type = "string", default = "{{message}}", min_len = 1,
      description = "the operator's message: a template over the step input" },
    system = { type = "string", min_len = 1, description = "the system message (default: the handler's)" },
    llm = { type = "object", additional = true,
      description = "more params for the llm agent: model, base_url, stream, temperature, max_tokens..." },
  } },

  check_step = function(step, view)
    return view.check_agent(step, "llm", llm_params(step.params or {}))
  end,

  call = function(input, ctx)
    local out, meta, info = ctx:call("llm", llm_params(ctx.params), input)
    if out == nil then return nil, meta, info end -- meta: the message
    return { response = out.text, finish_reason = out.finish_reason }, handler.usage(meta)
  end,
}
