-- luacheck: max line length 200 (the prompts keep their JSON example on one line)
-- log_analyzer: reads a job's log from the Workload Scheduler (tws log),
-- then asks the model what went wrong (llm, JSON answer). The prompts
-- below are the handler's: edit them here (the file hot-reloads) or
-- override them per step with params.llm.system / params.llm.prompt.
-- Output: {job, summary, findings = [{line, text, meaning}], log =
-- {total_bytes, returned_bytes, truncated}}; docs/agents.md.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"
local json = require "chorus.json"

local SYSTEM = [[
You are an operator of IBM Workload Scheduler (HCL Workload Automation) reading a job log.
Find the lines that explain how the job ended: abends, return codes, error message ids
(AWS...E, EQQ...E, SQLnnnnN), exceptions. Quote each line exactly, with its line number
as numbered below, and say in a few words what it means.
Answer with one JSON object and nothing else, shaped like
{"summary": "one sentence: how the job ended and why", "findings": [{"line": 1, "text": "the line", "meaning": "what it means"}]}
]]

-- Filled from the job's view and its log (the llm agent renders it).
local PROMPT = [[
Job {{job.job_name}} in job stream {{job.job_stream}} on {{job.workstation}}: status {{job.status}} ({{job.internal_status}}), return code {{job.return_code}}.
The log ({{log_note}}), one numbered line each:
{{numbered}}
]]

local function tws_params(p)
  return handler.merge(p.tws, { operation = "log", job = p.job, job_stream = p.job_stream,
    workstation = p.workstation, max_log_bytes = p.max_log_bytes })
end

local function llm_params(p)
  return handler.merge({ system = SYSTEM, prompt = PROMPT, temperature = 0 }, p.llm, { response_format = "json" })
end

local function numbered(lines)
  local out = {}
  for i, l in ipairs(lines) do out[i] = ("%d: %s"):format(i, l) end
  return table.concat(out, "\n")
end

-- The model's answer, held to the shape the output promises.
local function findings_of(answer)
  if type(answer) ~= "table" or type(answer.summary) ~= "string" then
    return nil, "the model's JSON has no summary (a string)"
  end
  local out = json.array()
  if type(answer.findings) == "table" then
    for _, f in ipairs(answer.findings) do
      if type(f) == "table" and type(f.text) == "string" then
        out[#out + 1] = { line = tonumber(f.line) or json.null, text = f.text,
          meaning = type(f.meaning) == "string" and f.meaning or "" }
      elseif type(f) == "string" then
        out[#out + 1] = { line = json.null, text = f, meaning = "" }
      end
    end
  end
  return answer.summary, out
end

return {
  name = "log_analyzer",
  version = "1.0.0",
  description = "A job's log from the Workload Scheduler, read by the model: summary and findings (tws log, then llm).",
  schema = { fields = {
    job = { type = "string", default = "{{job_name}}", min_len = 1, description = "job name: a template over the step input" },
    job_stream = { type = "string", min_len = 1, description = "job stream name (template)" },
    workstation = { type = "string", min_len = 1, description = "workstation (template)" },
    max_log_bytes = { type = "integer", default = 16384, min = 256, max = 1048576,
      description = "the end of the log given to the model" },
    tws = { type = "object", additional = true, description = "more params for the tws agent (connection...)" },
    llm = { type = "object", additional = true,
      description = "more params for the llm agent: model, base_url, temperature, max_tokens, system, prompt..." },
  } },

  check_step = function(step, view)
    local p = step.params or {}
    local errs = view.check_agent(step, "tws", tws_params(p))
    -- the prompt is filled from the log, not from the step input
    local lp = llm_params(p)
    lp.prompt, lp.system = "x", "x"
    for _, e in ipairs(view.check_agent(step, "llm", lp)) do errs[#errs + 1] = e end
    return errs
  end,

  call = function(input, ctx)
    local p = ctx.params
    local log, err, info = ctx:call("tws", tws_params(p), input)
    if not log then return nil, err, info end
    -- ctx:call returns output, meta; or nil, message, info
    local answer, meta
    answer, meta, info = ctx:call("llm", llm_params(p), {
      job = log.job, numbered = numbered(log.lines),
      log_note = log.truncated and ("its last %d of %d bytes"):format(log.returned_bytes, log.total_bytes) or "whole",
    })
    if answer == nil then return nil, meta, info end
    local summary, findings = findings_of(answer)
    if not summary then
      local raw = json.encode_lenient(answer)
      return handler.fail("log_analyzer", ctx, findings .. ": " .. raw:sub(1, 200), handler.usage(meta))
    end
    return {
      job = log.job,
      summary = summary,
      findings = findings,
      log = { total_bytes = log.total_bytes, returned_bytes = log.returned_bytes, truncated = log.truncated },
    }, handler.usage(meta)
  end,
}
