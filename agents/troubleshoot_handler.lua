-- luacheck: max line length 200 (the prompts keep their JSON example on one line)
-- troubleshoot_handler: from a job's status, its log analysis and the
-- knowledge base's passages (this step's input: the outputs of the steps
-- it depends on), the model lists the likely causes and ranked
-- recommendations (llm, JSON answer). The prompts below are the
-- handler's: edit them here (the file hot-reloads) or override them per
-- step with params.llm.system / params.llm.prompt ({{question}} and
-- {{context}} are filled in).
-- Output: {summary, causes = [{cause, likelihood, evidence}],
-- recommendations = [{rank, action, rationale}] (rank 1 first), sources};
-- docs/agents.md.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"
local json = require "chorus.json"

local type, tostring, ipairs = type, tostring, ipairs

local SYSTEM = [[
You troubleshoot IBM Workload Scheduler jobs. From the evidence below (job status, job log
findings, knowledge-base passages numbered [n]), list the likely causes, most likely first,
each with the evidence for it, and the recommendations, ranked, the first the one to try first.
Cite passages by their number. Answer with one JSON object and nothing else, shaped like
{"summary": "one sentence", "causes": [{"cause": "...", "likelihood": "high", "evidence": "..."}], "recommendations": [{"rank": 1, "action": "...", "rationale": "..."}]}
]]

local PROMPT = [[
Problem: {{question}}

Evidence:
{{context}}
]]

local LIKELIHOOD = { high = true, medium = true, low = true }

local function llm_params(p)
  return handler.merge({ system = SYSTEM, prompt = PROMPT, temperature = 0 }, p.llm, { response_format = "json" })
end

-- The question: params.question (a template), else the input's own
-- question or message (text, not a template), else one about the job.
local ABOUT_JOB = "Job %s did not end as expected."
local OTHERWISE = "A job did not end as expected."

local function str(v) return type(v) == "string" and v or (v ~= nil and v ~= json.null and tostring(v) or "") end

-- The model's answer held to the promised shape: causes in its order,
-- recommendations by rank (ties keep its order), ranks renumbered 1..n.
local function shape(answer)
  if type(answer) ~= "table" or json.is_array(answer) then return nil, "the model's answer is not a JSON object" end
  if type(answer.recommendations) ~= "table" then return nil, "the model's JSON has no recommendations (a list)" end
  local causes, recs = json.array(), {}
  for _, c in ipairs(type(answer.causes) == "table" and answer.causes or {}) do
    if type(c) == "string" then c = { cause = c } end
    if type(c) == "table" and str(c.cause) ~= "" then
      local l = str(c.likelihood):lower()
      causes[#causes + 1] = { cause = str(c.cause), likelihood = LIKELIHOOD[l] and l or "unknown",
        evidence = str(c.evidence ~= nil and c.evidence or c.line) }
    end
  end
  for i, r in ipairs(answer.recommendations) do
    if type(r) == "string" then r = { action = r } end
    if type(r) == "table" and str(r.action) ~= "" then
      recs[#recs + 1] = { rank = tonumber(r.rank) or math.huge, order = i, action = str(r.action),
        rationale = str(r.rationale ~= nil and r.rationale or r.evidence) }
    end
  end
  if #recs == 0 then return nil, "the model's JSON has no recommendation with an action" end
  table.sort(recs, function(a, b)
    if a.rank ~= b.rank then return a.rank < b.rank end
    return a.order < b.order
  end)
  local ranked = json.array()
  for i, r in ipairs(recs) do ranked[i] = { rank = i, action = r.action, rationale = r.rationale } end
  return { summary = str(answer.summary), causes = causes, recommendations = ranked }
end

return {
  name = "troubleshoot_handler",
  version = "1.0.0",
  description = "Likely causes and ranked recommendations from status, log findings and knowledge base (llm, JSON).",
  schema = { fields = {
    question = { type = "string", min_len = 1,
      description = "the problem, a template (default: the input's question or message, else about {{job_name}})" },
    max_context_bytes = { type = "integer", default = 6000, min = 256, max = 1048576,
      description = "largest part of each input field given to the model" },
    llm = { type = "object", additional = true,
      description = "more params for the llm agent: model, base_url, temperature, max_tokens, system, prompt..." },
  } },

  check_step = function(step, view)
    local p = step.params or {}
    local lp = llm_params(p)
    lp.prompt = p.question or "x"
    return view.check_agent(step, "llm", lp)
  end,

  call = function(input, ctx)
    local p = ctx.params
    local question, err = handler.question(p, input, ABOUT_JOB, OTHERWISE)
    if not question then return handler.fail("troubleshoot_handler", ctx, err, { retry = false }) end
    local context, sources = handler.context(input, { max_bytes = p.max_context_bytes,
      skip = { question = true, message = true } })
    local answer, meta, info = ctx:call("llm", llm_params(p), { question = question, context = context })
    if answer == nil then return nil, meta, info end -- meta: the message
    local out, why = shape(answer)
    if not out then
      return handler.fail("troubleshoot_handler", ctx, why .. ": " .. json.encode_lenient(answer):sub(1, 200),
        handler.usage(meta))
    end
    out.sources = sources
    return out, handler.usage(meta)
  end,
}
