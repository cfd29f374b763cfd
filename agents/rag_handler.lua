-- rag_handler: searches the knowledge base (the kb agent: PostgreSQL full
-- text, re-ranked by embeddings when configured) for what the operator
-- needs. The query is params.query (a template over the step input); else
-- the input's question, message or query; else it is made from what the
-- step knows about the job: its name, status and return code, and the
-- log analysis' summary when the step depends on one.
-- Output: the kb agent's shape (query, results = [{rank, title, snippet,
-- score, document...}], count...; docs/agents.md).
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local handler = lazy "chorus.handler"
local json = require "chorus.json"

local type, pairs, tostring = type, pairs, tostring

local function kb_params(p, query)
  return handler.merge(p.kb, { query = query, limit = p.limit, min_score = p.min_score, collection = p.collection })
end

local function text(v)
  if type(v) == "string" and v:find("%S") then return v end
  if type(v) == "number" then return tostring(v) end
  return nil
end

-- Words about the job from the input: a status (status_handler's shape),
-- a log analysis (log_analyzer's), whatever key they came under.
local function job_query(input)
  local words, seen = {}, {}
  local function add(v)
    v = text(v)
    if v and not seen[v] then
      seen[v] = true
      words[#words + 1] = v
    end
  end
  add(input.job_name)
  for _, v in pairs(input) do
    if type(v) == "table" and v ~= json.null then
      local job = type(v.job) == "table" and v.job or v
      add(job.job_name)
      add(job.internal_status)
      if type(job.return_code) == "number" and job.return_code ~= 0 then add("RC " .. job.return_code) end
      add(v.summary)
    end
  end
  if #words == 0 then return nil end
  return table.concat(words, " ")
end

return {
  name = "rag_handler",
  version = "1.0.0",
  description = "Knowledge-base search for the job or question at hand (kb).",
  schema = { fields = {
    query = { type = "string", min_len = 1,
      description = "what to search for, a template (default: the input's question/message/query, else the job's facts)" },
    limit = { type = "integer", default = 5, min = 1, max = 100, description = "passages returned" },
    min_score = { type = "number", min = -1, max = 1, description = "passages scoring below are dropped" },
    collection = { type = "string", min_len = 1, description = "search one collection (default: all)" },
    kb = { type = "object", additional = true,
      description = "more params for the kb agent (match, language, embedding_model...)" },
  } },

  check_step = function(step, view)
    local p = step.params or {}
    return view.check_agent(step, "kb", kb_params(p, p.query or "{{rag_query}}"))
  end,

  call = function(input, ctx)
    local p = ctx.params
    if p.query then return ctx:call("kb", kb_params(p, p.query), input) end
    local q = handler.asked(input) or job_query(input)
    if not q then
      return handler.fail("rag_handler", ctx, "nothing to search for: set params.query, or give the input "
        .. "a question, message, query or job_name", { retry = false })
    end
    -- the query is data, not a template: it goes through the input
    return ctx:call("kb", kb_params(p, "{{rag_query}}"), setmetatable({ rag_query = q }, { __index = input }))
  end,
}
