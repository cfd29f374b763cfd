-- chorus.kb.search: the knowledge base's search, one SQL statement:
-- full-text candidates (websearch_to_tsquery, so operators type what they
-- would type in a search box: words, "phrases", -exclusions, or), ranked
-- by ts_rank_cd with normalization 32 (rank / (rank + 1): a score in
-- [0, 1) that min_score can be set against), then, when a query vector is
-- given, re-ranked by the cosine between it and each candidate's stored
-- embedding (of the same model and dimensions), and snippets from
-- ts_headline for the rows returned.
--
--   run(pool, query, opts) -> {{chunk_id, document, title, collection,
--       heading, position, text, snippet, score, text_score,
--       vector_score}...} | nil, err, info
--   opts: limit (5), min_score (0), collection (nil: all), language
--     ("english"), match ("any" | "all"), candidates (50), vector (numbers) and model (the
--     embeddings model the vector came from), snippet_words (35)
--   score: vector_score when the row has one, else text_score. Rows with
--   a vector score come first (re-ranked), the others after by text score.
local json = require "chorus.json"

local M = {}

local SQL = [[
WITH w AS (SELECT websearch_to_tsquery($2::regconfig, $1) AS w),
q AS (SELECT CASE WHEN $10 = 'any' AND strpos(w::text, '!') = 0
                  THEN replace(w::text, ' & ', ' | ')::tsquery ELSE w END AS q FROM w),
cand AS (
  SELECT c.id, c.document_id, c.position, c.heading, c.content, c.embedding,
         ts_rank_cd(c.tsv, q.q, 32)::float8 AS text_score
  FROM kb_chunks c CROSS JOIN q
  WHERE c.tsv @@ q.q
    AND ($3::text IS NULL OR c.document_id IN (SELECT id FROM kb_documents WHERE collection = $3))
  ORDER BY text_score DESC, c.id
  LIMIT $4
),
scored AS (
  SELECT cand.id, cand.position, cand.heading, cand.content, cand.text_score,
         d.source_path, d.title, d.collection,
         CASE WHEN $5::real[] IS NULL OR cand.embedding IS NULL OR d.embedding_model IS DISTINCT FROM $6
                   OR cardinality(cand.embedding) <> cardinality($5::real[]) THEN NULL
              ELSE (SELECT sum(a::float8 * b) / nullif(sqrt(sum(a::float8 * a)) * sqrt(sum(b::float8 * b)), 0)
                    FROM unnest(cand.embedding, $5::real[]) AS t(a, b))
         END AS vector_score
  FROM cand JOIN kb_documents d ON d.id = cand.document_id
),
top AS (
  SELECT * FROM scored
  WHERE coalesce(vector_score, text_score) >= $7
  ORDER BY (vector_score IS NULL), vector_score DESC, text_score DESC, id
  LIMIT $8
)
SELECT top.*, ts_headline($2::regconfig, top.content, q.q, $9) AS snippet
FROM top CROSS JOIN q
ORDER BY (top.vector_score IS NULL), top.vector_score DESC, top.text_score DESC, top.id
]]

-- A real[] literal: PostgreSQL reads '{0.1,-2.5e-3}' as real[].
local function array_literal(v)
  local parts = {}
  for i, x in ipairs(v) do parts[i] = string.format("%.9g", x) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function M.run(pool, query, opts)
  opts = opts or {}
  local words = opts.snippet_words or 35
  local headline = ('MaxWords=%d, MinWords=%d, MaxFragments=2, FragmentDelimiter=" … ", StartSel=«, StopSel=»')
    :format(words, math.max(1, math.floor(words / 3)))
  local vector = opts.vector and array_literal(opts.vector) or nil
  local limit = opts.limit or 5
  local res, err, info = pool:query(SQL, query, opts.language or "english", opts.collection,
    math.max(opts.candidates or 50, limit), vector, opts.model, opts.min_score or 0, limit, headline,
    opts.match or "any")
  if not res then
    local code = info and info.code
    if code == "42P01" then
      return nil, "the knowledge base tables are missing: run `chorus migrate` and `chorus kb import`", { retry = false }
    elseif code == "42704" then
      return nil, ("unknown text search configuration '%s' (the language setting)"):format(tostring(opts.language)),
        { retry = false }
    end
    return nil, "the knowledge base query failed: " .. tostring(err)
  end
  local out = json.array()
  for i, r in ipairs(res.rows) do
    out[i] = {
      chunk_id = r.id, document = r.source_path, title = r.title, collection = r.collection,
      heading = r.heading or json.null, position = r.position, text = r.content, snippet = r.snippet,
      score = r.vector_score or r.text_score, text_score = r.text_score, vector_score = r.vector_score or json.null,
    }
  end
  return out
end

return M
