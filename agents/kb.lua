-- kb: searches the knowledge base in PostgreSQL (the plan's RAG step):
-- full text first (websearch_to_tsquery, ranked by ts_rank_cd, snippets
-- from ts_headline), re-ranked by cosine over stored embeddings when an
-- embeddings model is configured. The knowledge base is loaded with
-- `chorus kb import DIR --db URL`; the agent uses the process's database
-- (--db / DATABASE_URL). Params and output: docs/agents.md ("kb").
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local resources = lazy "chorus.run.resources"
local search = lazy "chorus.kb.search"
local embeddings = lazy "chorus.kb.embeddings"
local template = require "chorus.template"
local json = require "chorus.json"

local format = string.format
local NO_RETRY = { retry = false }

local function fail(ctx, msg, info)
  if msg == "cancelled" then return nil, msg end
  return nil, format("kb (step %s): %s", tostring(ctx.step_id), msg), info
end

return {
  name = "kb",
  version = "1.0.0",
  description = "Knowledge-base search in PostgreSQL (full text, optional embeddings re-rank).",
  schema = { fields = {
    query = { type = "string", required = true, min_len = 1, max_len = 4000,
      description = "what to search for: a template over the step input, e.g. \"{{job_name}} {{dep_log.summary}}\"" },
    match = { type = "string", default = "any", enum = { "any", "all" },
      description = "any: chunks holding some of the query's words (ranked by how many, how close); all: every word" },
    limit = { type = "integer", default = 5, min = 1, max = 100, description = "results returned" },
    min_score = { type = "number", default = 0, min = -1, max = 1,
      description = "results scoring below are dropped (text rank in [0,1), or cosine when re-ranked)" },
    collection = { type = "string", min_len = 1, max_len = 200, description = "search one collection (default: all)" },
    language = { type = "string", default = "english", pattern = "^[%w_]+$", pattern_help = "a text search configuration name",
      description = "text search configuration of the query (as at import)" },
    candidates = { type = "integer", default = 50, min = 1, max = 1000,
      description = "full-text candidates re-ranked by embeddings" },
    embedding_model = { type = "string", min_len = 1, max_len = 200,
      description = "re-rank with this embeddings model (default: $CHORUS_EMBEDDING_MODEL; none: full text only)" },
    base_url = { type = "string", max_len = 2048, pattern = "^https?://[^%s]+$", pattern_help = "an http:// or https:// URL",
      description = "OpenAI-compatible endpoint for the query's embedding (default: $OPENAI_BASE_URL)" },
    api_key_env = { type = "string", default = "OPENAI_API_KEY", pattern = "^[%a_][%w_]*$",
      pattern_help = "an environment variable name", description = "variable holding the embeddings API key" },
    snippet_words = { type = "integer", default = 35, min = 5, max = 200, description = "longest snippet fragment, in words" },
  } },

  check_step = function(step, cfg)
    local p = step.params or {}
    if type(p.query) ~= "string" then return {} end
    return template.check_paths(step, cfg and cfg.steps_by_id or {}, template.placeholders(p.query), "params.query")
  end,

  call = function(input, ctx)
    local p = ctx.params or {}
    local pool = resources.kb_pg()
    if not pool then
      return fail(ctx, "no database: the kb agent searches the knowledge base in PostgreSQL; run with --db URL "
        .. "(or DATABASE_URL), or --kb-db URL (or CHORUS_KB_DB) for a database of its own, after loading it with "
        .. "`chorus kb import DIR --db URL`", NO_RETRY)
    end
    local query, err = template.render(p.query, input, "params.query")
    if not query then return fail(ctx, err, NO_RETRY) end
    query = query:match("^%s*(.-)%s*$")
    if query == "" then return fail(ctx, "the query is empty (params.query rendered to blanks)", NO_RETRY) end
    if #query > 4000 then query = query:sub(1, 4000) end

    local model = p.embedding_model or os.getenv("CHORUS_EMBEDDING_MODEL")
    if model == "" then model = nil end
    local vector, usage
    if model then
      local emb, eerr, einfo = embeddings.client({ base_url = p.base_url, model = model, api_key_env = p.api_key_env,
        traceparent = ctx:traceparent() })
      if not emb then return fail(ctx, eerr, einfo) end
      local vecs
      vecs, usage, einfo = emb:embed({ query })
      if not vecs then return fail(ctx, usage, einfo) end
      vector = vecs[1]
    end

    local rows, serr, sinfo = search.run(pool, query, {
      limit = p.limit, min_score = p.min_score, match = p.match, collection = p.collection, language = p.language,
      candidates = p.candidates, vector = vector, model = model, snippet_words = p.snippet_words,
    })
    if not rows then return fail(ctx, serr, sinfo) end
    local reranked = false
    for i, r in ipairs(rows) do
      r.rank = i
      if r.vector_score ~= json.null then reranked = true end
    end
    local out = {
      query = query,
      results = rows,
      count = #rows,
      reranked = reranked,
      embedding_model = model or json.null,
      collection = p.collection or json.null,
    }
    return out, usage and { tokens = usage.total_tokens, model = model } or nil
  end,
}
