-- synthesizer: writes the operator's answer from what the other steps
-- found (their outputs are this step's input), with the model (llm,
-- streamed by default: subscribers and `chorus run` see it as it is
-- written). The prompts below are the handler's: edit them here (the file
-- hot-reloads) or override them per step with params.llm.system and
-- params.llm.prompt ({{question}} and {{context}} are filled in).
-- Output: {answer, sources = [{ref, title, document, chunk_id, score}]}
-- (sources: the knowledge-base passages the prompt numbered); docs/agents.md.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"

local SYSTEM = [[
You are the on-call assistant of a team that runs IBM Workload Scheduler.
From what the investigation found, write the answer for the operator: what happened,
the most likely cause with the evidence for it, and what to do next, in that order.
Cite knowledge-base passages by their number, as [1]. Be brief and concrete; say so
when the evidence is missing rather than guessing.
]]

local PROMPT = [[
Question: {{question}}

What the investigation found:
{{context}}
]]

-- The question: params.question (a template), else the input's own
-- question or message (text, not a template), else one about the job.
local ABOUT_JOB = "What happened to job %s, why, and what should the operator do?"
local OTHERWISE = "What happened, why, and what should the operator do?"

local function llm_params(p)
  return handler.merge({ system = SYSTEM, prompt = PROMPT, stream = true, temperature = 0.2 }, p.llm)
end

return {
  name = "synthesizer",
  version = "1.0.0",
  description = "The operator's answer, written by the model from the dependencies' outputs (llm, streamed).",
  schema = { fields = {
    question = { type = "string", min_len = 1,
      description = "the question answered, a template (default: the input's question or message, else about {{job_name}})" },
    max_context_bytes = { type = "integer", default = 6000, min = 256, max = 1048576,
      description = "largest part of each input field given to the model" },
    llm = { type = "object", additional = true,
      description = "more params for the llm agent: model, base_url, stream, temperature, max_tokens, system, prompt..." },
  } },

  check_step = function(step, view)
    local p = step.params or {}
    local lp = llm_params(p)
    lp.prompt = p.question or "x" -- the prompt is filled by the handler; the question is a step template
    return view.check_agent(step, "llm", lp)
  end,

  call = function(input, ctx)
    local p = ctx.params
    local question, err = handler.question(p, input, ABOUT_JOB, OTHERWISE)
    if not question then return handler.fail("synthesizer", ctx, err, { retry = false }) end
    local context, sources = handler.context(input, { max_bytes = p.max_context_bytes,
      skip = { question = true, message = true } })
    local out, meta, info = ctx:call("llm", llm_params(p), { question = question, context = context })
    if out == nil then return nil, meta, info end -- meta: the message
    return { answer = out.text, sources = sources }, handler.usage(meta)
  end,
}
