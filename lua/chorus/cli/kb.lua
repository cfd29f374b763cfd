-- chorus kb import DIR [options] --db URL: makes a knowledge-base
-- collection match a directory of markdown (.md, .markdown) and text
-- (.txt, .text) files; re-running it changes only what changed (counts
-- are printed). chorus kb search QUERY --db URL: what the kb agent would
-- find, to check an import. Exit 0 done, 1 failed, 2 bad usage.
local args = require "chorus.cli.args"
local db = require "chorus.cli.db"
local json = require "chorus.json"

local SPEC = {
  db = db.SPEC,
  collection = { type = "string", arg = "NAME", help = "collection to import into or search (import default: default)" },
  language = { type = "string", arg = "CFG", help = "text search configuration (default: english)" },
  ["chunk-chars"] = { type = "string", arg = "N", help = "largest chunk, in characters (import; default 1500)" },
  ["embedding-model"] = { type = "string", arg = "MODEL",
    help = "store (import) or re-rank with (search) embeddings of this model (default: $CHORUS_EMBEDDING_MODEL)" },
  ["base-url"] = { type = "string", arg = "URL", help = "OpenAI-compatible endpoint for embeddings (default: $OPENAI_BASE_URL)" },
  ["api-key-env"] = { type = "string", arg = "NAME", help = "variable holding the embeddings key (default: OPENAI_API_KEY)" },
  limit = { type = "string", arg = "N", help = "search results (default 5)" },
  match = { type = "string", arg = "any|all", help = "search: chunks with any (default) or all of the words" },
  json = { type = "flag", help = "print the report or the results as JSON" },
  help = { type = "flag", short = "h", help = "show this help" },
}
local ORDER = { "db", "collection", "language", "chunk-chars", "embedding-model", "base-url", "api-key-env",
  "limit", "match", "json", "help" }

local function usage(out)
  out:write("usage: chorus kb import DIR [options]\n       chorus kb search QUERY [options]\n\n" .. args.usage(SPEC, ORDER))
end

local function say(msg) io.stderr:write("chorus kb: " .. msg .. "\n") end

local function embedder(opts)
  local model = opts["embedding-model"] or os.getenv("CHORUS_EMBEDDING_MODEL")
  if model == nil or model == "" then return true end
  return require("chorus.kb.embeddings").client({ base_url = opts["base-url"], model = model,
    api_key_env = opts["api-key-env"] })
end

local function import(opts, dir, d)
  local chunk_chars = tonumber(opts["chunk-chars"] or "1500")
  if not chunk_chars or chunk_chars < 200 or chunk_chars > 100000 or chunk_chars % 1 ~= 0 then
    say("--chunk-chars must be a whole number from 200 to 100000")
    return 2
  end
  local emb, eerr = embedder(opts)
  if not emb then say(eerr) return 2 end
  local report, err = require("chorus.kb.import").run(d.pool, dir, {
    collection = opts.collection, language = opts.language, max_chars = chunk_chars,
    embedder = emb ~= true and emb or nil,
  })
  if not report then say("import of " .. dir .. " failed: " .. tostring(err)) return 1 end
  if opts.json then
    io.stdout:write(json.encode(report) .. "\n")
  else
    io.stdout:write(("imported %s into collection %s: %d added, %d updated, %d unchanged, %d removed (%d chunks written%s)\n")
      :format(dir, report.collection, report.added, report.updated, report.unchanged, report.removed, report.chunks,
        report.embedding_tokens > 0 and (", " .. report.embedding_tokens .. " embedding tokens") or ""))
    for _, s in ipairs(report.skipped) do io.stdout:write(("skipped %s: %s\n"):format(s.path, s.reason)) end
  end
  return 0
end

local function search(opts, query, d)
  local limit = tonumber(opts.limit or "5")
  if not limit or limit < 1 or limit > 100 or limit % 1 ~= 0 then say("--limit must be a whole number from 1 to 100") return 2 end
  if opts.match and opts.match ~= "any" and opts.match ~= "all" then say("--match must be any or all") return 2 end
  local emb, eerr = embedder(opts)
  if not emb then say(eerr) return 2 end
  local vector
  if emb ~= true then
    local vecs, verr = emb:embed({ query })
    if not vecs then say(verr) return 1 end
    vector = vecs[1]
  end
  local rows, err = require("chorus.kb.search").run(d.pool, query, { limit = limit, collection = opts.collection,
    language = opts.language, match = opts.match, vector = vector, model = emb ~= true and emb.model or nil })
  if not rows then say(err) return 1 end
  if opts.json then
    io.stdout:write(json.encode(rows) .. "\n")
  else
    if #rows == 0 then io.stdout:write("no results\n") end
    for i, r in ipairs(rows) do
      io.stdout:write(("%d. %.3f  %s%s\n    %s\n"):format(i, r.score, r.document,
        r.heading ~= json.null and ("  [" .. r.heading .. "]") or "", (r.snippet:gsub("%s+", " "))))
    end
  end
  return 0
end

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then say(pos) return 2 end
  if opts.help then usage(io.stdout) return 0 end
  local sub, target = pos[1], pos[2]
  if (sub ~= "import" and sub ~= "search") or not target or #pos > 2 then usage(io.stderr) return 2 end
  local url = db.need(opts, "kb")
  if not url then return 2 end
  local d, err = require("chorus.store.open").open(url, { pool_size = 2 })
  if not d then say(err) return 1 end
  local code
  if sub == "import" then code = import(opts, target, d) else code = search(opts, target, d) end
  d.pool:close()
  return code
end
