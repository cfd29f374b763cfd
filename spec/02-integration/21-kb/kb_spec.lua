-- The knowledge base on a real PostgreSQL: `chorus kb import` (first
-- import, unchanged, changed, removed, skipped files, collections, a new
-- chunk size), the kb agent's search (ranking, snippets, limit, min score,
-- match, templates), re-ranking with embeddings from a local stand-in that
-- answers the OpenAI embeddings shape, and the errors: no database, no
-- tables, a missing template field, an embeddings endpoint that refuses.
-- #postgres
local h = require "spec.helpers"
local env = require "spec.support.env"
local pg = require "chorus.db.pg"
local json = require "chorus.json"
local log = require "chorus.log"
local server = require "chorus.http.server"
local resources = require "chorus.run.resources"
local import = require "chorus.kb.import"
local embeddings = require "chorus.kb.embeddings"

local API_KEY = "sk-spec-0123456789abcdef"

-- A stand-in OpenAI-compatible embeddings endpoint: a text's vector counts
-- the words "alpha" and "beta" in it (plus a small constant), so specs
-- know which documents an embedding brings closer to a query.
local function start_embeddings()
  local st = { requests = {}, fail = nil }
  st.srv = assert(server.listen({ port = 0 }, function(req)
    st.requests[#st.requests + 1] = { path = req.path, headers = req.headers, body = req.body }
    if st.fail then
      local status, headers, body = st.fail(req)
      if status then return status, headers, body end
    end
    if req.method ~= "POST" or req.path ~= "/v1/embeddings" then
      return 404, nil, { error = { message = "no route", type = "invalid_request_error" } }
    end
    local body = json.decode(req.body)
    local data, tokens = json.array(), 0
    for i, text in ipairs(body.input) do
      local _, a = text:lower():gsub("alpha", "")
      local _, b = text:lower():gsub("beta", "")
      data[i] = { object = "embedding", index = i - 1, embedding = { a, b, 0.01 } }
      tokens = tokens + math.floor(#text / 4) + 1
    end
    return 200, nil, { object = "list", data = data, model = body.model,
      usage = { prompt_tokens = tokens, total_tokens = tokens } }
  end))
  st.url = ("http://127.0.0.1:%d/v1"):format(st.srv.port)
  return st
end

local function write_tree(dir, files)
  for path, content in pairs(files) do
    local d = (dir .. "/" .. path):match("^(.*)/[^/]+$")
    os.execute("mkdir -p " .. d)
    if content == false then os.remove(dir .. "/" .. path) else h.write(dir .. "/" .. path, content) end
  end
end

local A_MD = [[
# Payroll runbook

Payroll jobs run every night after the backup.

## RC 12

An RC 12 means a database statement failed. Look for SQL0911N in the job log.

## Deadlocks

SQL0911N reason code 2 is a deadlock with the nightly backup. Rerun the job
after the backup has ended.
]]

local B_TXT = [[
Holding jobs

Hold a job that must not start yet; release it when its input is ready.
]]

local C_MD = [[
Cancel and kill
===============

Cancel removes a job that has not started. Kill stops a running job.
]]

describe("knowledge base #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  local url, pool, dir, engine
  local captured = {}

  local function kb(args)
    return h.sh(("%s kb %s --db '%s'"):format(h.binary, args, url))
  end

  local function docs(collection)
    local r = assert(pool:query([[SELECT d.id, d.source_path, d.title, d.chunk_count, d.embedding_model,
        array_agg(c.id ORDER BY c.position) AS chunk_ids
      FROM kb_documents d LEFT JOIN kb_chunks c ON c.document_id = d.id
      WHERE d.collection = $1 GROUP BY d.id ORDER BY d.source_path]], collection or "default"))
    local by = {}
    for _, row in ipairs(r.rows) do by[row.source_path] = row end
    return by, #r.rows
  end

  local function run_kb(params, input, opts)
    local exec = h.run(h.flat("sequential", {
      { id = "k", agent = "kb", params = params, retry = { max_attempts = (opts and opts.attempts) or 1 } },
    }), input or {}, { engine = engine })
    captured[#captured + 1] = json.encode(exec:record())
    return exec, exec:run_of("k")
  end

  setup(function()
    url = h.fresh_db("kb")
    pool = pg.pool(url, { size = 4 })
    dir = h.tmpdir() .. "/kb"
    write_tree(dir, { ["a.md"] = A_MD, ["sub/b.txt"] = B_TXT, ["c.markdown"] = C_MD,
      ["notes.pdf"] = "%PDF not text", [".hidden.md"] = "# hidden", [".git/x.md"] = "# nope" })
    engine = h.engine()
  end)

  teardown(function()
    resources.set_pg(nil)
    if pool then pool:close() end
  end)

  describe("chorus kb import", function()
    it("loads markdown and text files, chunked by heading, skipping the rest", function()
      local code, out, err = kb("import " .. dir)
      assert.equal(0, code, err)
      assert.matches("imported .* into collection default: 3 added, 0 updated, 0 unchanged, 0 removed "
        .. "%(%d+ chunks written%)", out)
      local by, n = docs()
      assert.equal(3, n)
      assert.equal("Payroll runbook", by["a.md"].title)
      assert.equal("Cancel and kill", by["c.markdown"].title)
      assert.equal("b", by["sub/b.txt"].title)
      local r = assert(pool:query([[SELECT c.heading, c.content, c.tsv::text AS tsv FROM kb_chunks c
        JOIN kb_documents d ON d.id = c.document_id WHERE d.source_path = 'a.md' ORDER BY c.position]]))
      assert.same({ "Payroll runbook", "Payroll runbook > RC 12", "Payroll runbook > Deadlocks" },
        { r.rows[1].heading, r.rows[2].heading, r.rows[3].heading })
      assert.matches("^An RC 12 means", r.rows[2].content)
      assert.matches("'deadlock':%d+A", r.rows[3].tsv) -- the heading weighs A
    end)

    it("re-importing unchanged files touches nothing", function()
      local before = docs()
      local code, out = kb("import " .. dir .. " --json")
      assert.equal(0, code)
      local report = json.decode(out)
      assert.same({ collection = "default", added = 0, updated = 0, unchanged = 3, removed = 0, chunks = 0,
        skipped = {}, embedding_tokens = 0 }, report)
      local after = docs()
      for path, d in pairs(before) do assert.same(d.chunk_ids, after[path].chunk_ids) end
    end)

    it("a changed file is replaced, the others stay as they were", function()
      local before = docs()
      write_tree(dir, { ["a.md"] = A_MD .. "\n## Escalation\n\nPage PAYROLL-OPS after a second failure.\n" })
      local code, out = kb("import " .. dir)
      assert.equal(0, code)
      assert.matches("0 added, 1 updated, 2 unchanged, 0 removed %(4 chunks written%)", out)
      local after = docs()
      assert.equal(before["a.md"].id, after["a.md"].id)
      assert.equal(4, after["a.md"].chunk_count)
      assert.not_same(before["a.md"].chunk_ids, after["a.md"].chunk_ids)
      assert.same(before["sub/b.txt"].chunk_ids, after["sub/b.txt"].chunk_ids)
      local r = assert(pool:query("SELECT count(*)::int AS n FROM kb_chunks WHERE document_id = $1", before["a.md"].id))
      assert.equal(4, r.rows[1].n)
    end)

    it("a removed file is dropped with its chunks", function()
      local before = docs()
      write_tree(dir, { ["c.markdown"] = false })
      local code, out = kb("import " .. dir)
      assert.equal(0, code)
      assert.matches("0 added, 0 updated, 2 unchanged, 1 removed", out)
      local after, n = docs()
      assert.equal(2, n)
      assert.is_nil(after["c.markdown"])
      local r = assert(pool:query("SELECT count(*)::int AS n FROM kb_chunks WHERE document_id = $1", before["c.markdown"].id))
      assert.equal(0, r.rows[1].n)
      write_tree(dir, { ["c.markdown"] = C_MD })
      assert.equal(0, (kb("import " .. dir)))
    end)

    it("a file that is not UTF-8 is skipped and keeps its old document", function()
      write_tree(dir, { ["sub/b.txt"] = "Holding jobs\n\xff\xfe broken\n" })
      local code, out = kb("import " .. dir)
      assert.equal(0, code)
      assert.matches("0 removed", out)
      assert.matches("skipped sub/b.txt: not UTF%-8 %(byte %d+%)", out)
      assert.truthy(docs()["sub/b.txt"])
      write_tree(dir, { ["sub/b.txt"] = B_TXT })
      assert.equal(0, (kb("import " .. dir)))
    end)

    it("a new chunk size re-cuts every file; collections are apart", function()
      local code, out = kb("import " .. dir .. " --chunk-chars 200")
      assert.equal(0, code)
      assert.matches("0 added, 3 updated, 0 unchanged", out)
      code, out = kb("import " .. dir .. " --chunk-chars 200 --collection other")
      assert.equal(0, code)
      assert.matches("into collection other: 3 added", out)
      local _, n = docs("other")
      assert.equal(3, n)
      local _, m = docs("default")
      assert.equal(3, m)
      assert.equal(0, (kb("import " .. dir)))
    end)

    it("bad input: a missing directory, an unknown language, no database", function()
      local code, _, err = kb("import " .. dir .. "/nope")
      assert.equal(1, code)
      assert.matches("import of .*/nope failed: cannot read the directory: .*nope: no such file or directory", err)
      code, _, err = kb("import " .. dir .. " --language klingon")
      assert.equal(1, code)
      assert.matches("unknown text search configuration 'klingon'", err)
      code, _, err = h.sh(("env -u DATABASE_URL %s kb import %s"):format(h.binary, dir))
      assert.equal(2, code)
      assert.matches("no database: give %-%-db URL or set DATABASE_URL", err)
    end)

    it("chorus kb search shows what the agent would find", function()
      local code, out = kb("search 'deadlock backup'")
      assert.equal(0, code)
      assert.matches("^1%. 0%.%d+  a%.md  %[Payroll runbook > Deadlocks%]", out)
    end)
  end)

  describe("kb agent", function()
    setup(function() resources.set_pg(pool) end)

    it("ranks by ts_rank_cd and returns snippets", function()
      local exec, sr = run_kb({ query = "{{job_name}} deadlock backup rerun", collection = "default" },
        { job_name = "PAYROLL_DAILY" })
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.equal("PAYROLL_DAILY deadlock backup rerun", o.query)
      assert.is_false(o.reranked)
      assert.is_true(o.count >= 2)
      local top = o.results[1]
      assert.equal("a.md", top.document)
      assert.equal("Payroll runbook > Deadlocks", top.heading)
      assert.equal(1, top.rank)
      assert.matches("«deadlock»", top.snippet, 1, true)
      assert.matches("SQL0911N reason code 2", top.text, 1, true)
      for i = 2, #o.results do
        assert.is_true(o.results[i - 1].score >= o.results[i].score)
        assert.equal(o.results[i].text_score, o.results[i].score)
      end
      assert.is_true(top.score > 0 and top.score < 1)
    end)

    it("limit and min_score", function()
      local _, all = run_kb({ query = "job", limit = 10 })
      assert.is_true(#all.output.results >= 4)
      local _, two = run_kb({ query = "job", limit = 2 })
      assert.equal(2, #two.output.results)
      local cut = (all.output.results[2].score + all.output.results[#all.output.results].score) / 2
      local _, some = run_kb({ query = "job", limit = 10, min_score = cut })
      assert.is_true(#some.output.results >= 1 and #some.output.results < #all.output.results)
      for _, r in ipairs(some.output.results) do assert.is_true(r.score >= cut) end
    end)

    it("match any (default) against all", function()
      local _, any = run_kb({ query = "deadlock kill" })
      local _, all = run_kb({ query = "deadlock kill", match = "all" })
      assert.is_true(#any.output.results >= 2)
      assert.equal(0, #all.output.results)
      local _, neg = run_kb({ query = "job -payroll", limit = 20 })
      for _, r in ipairs(neg.output.results) do assert.is_nil(r.text:lower():find("payroll", 1, true)) end
    end)

    it("a template naming a missing field fails the step, at validation when it can be known", function()
      local cfg, errs = engine:validate(h.flat("sequential", {
        { id = "k", agent = "kb", params = { query = "{{dep_x.summary}}" } } }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.query", errs[1].path)
      local exec, sr = run_kb({ query = "{{job_name}} {{error_text}}" }, { job_name = "X" }, { attempts = 3 })
      assert.equal("failed", exec.status)
      assert.equal("kb (step k): template params.query: no value for {{error_text}} in the step input", sr.error)
      assert.equal(1, sr.attempts)
      sr = select(2, run_kb({ query = "{{blank}}" }, { blank = "  " }))
      assert.equal("kb (step k): the query is empty (params.query rendered to blanks)", sr.error)
    end)

    it("without a database the step says it needs --db", function()
      resources.set_pg(nil)
      local exec, sr = run_kb({ query = "deadlock" }, nil, { attempts = 3 })
      resources.set_pg(pool)
      assert.equal("failed", exec.status)
      assert.equal("kb (step k): no database: the kb agent searches the knowledge base in PostgreSQL; run with "
        .. "--db URL (or DATABASE_URL), or --kb-db URL (or CHORUS_KB_DB) for a database of its own, after loading "
        .. "it with `chorus kb import DIR --db URL`", sr.error)
      assert.equal(1, sr.attempts)
    end)

    it("a database without the knowledge base tables says to migrate", function()
      local url2 = h.fresh_db("kbdown")
      local p2 = pg.pool(url2, { size = 1 })
      assert(p2:query("DROP TABLE kb_chunks, kb_documents"))
      resources.set_pg(p2)
      local _, sr = run_kb({ query = "deadlock" })
      resources.set_pg(pool)
      p2:close()
      assert.matches("the knowledge base tables are missing: run `chorus migrate`", sr.error)
    end)

    it("chorus.store.open hands its pool to agents", function()
      resources.set_pg(nil)
      local d = assert(require("chorus.store.open").open(url, { pool_size = 1 }))
      assert.equal(d.pool, resources.pg())
      d.pool:close()
      assert.is_nil(resources.pg())
      resources.set_pg(pool)
    end)
  end)

  describe("embeddings", function()
    local emb, restore
    local rr_dir
    local old_sink, old_level

    setup(function()
      old_sink, old_level = log.sink, log.level
      log.sink = { write = function(_, line) captured[#captured + 1] = line end }
      log.set_level("debug")
      emb = start_embeddings()
      restore = env.set({ OPENAI_BASE_URL = emb.url, OPENAI_API_KEY = API_KEY, CHORUS_EMBEDDING_MODEL = false })
      resources.set_pg(pool)
      rr_dir = h.tmpdir() .. "/rr"
      write_tree(rr_dir, {
        ["restart-a.md"] = "# Restart guide\n\nRestart the job: restart job, restart procedure, job restart. alpha\n",
        ["restart-b.md"] = "# Other note\n\nA restart note. beta\n",
      })
    end)

    teardown(function()
      log.sink, log.level = old_sink, old_level
      restore()
      emb.srv:close()
    end)

    it("stores real[] embeddings at import when a model is given", function()
      local e = assert(embeddings.client({ model = "spec-embed" }))
      local report = assert(import.run(pool, rr_dir, { collection = "rr", embedder = e }))
      assert.equal(2, report.added)
      assert.is_true(report.embedding_tokens > 0)
      local r = assert(pool:query([[SELECT d.source_path, d.embedding_model, c.embedding::text AS e
        FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id WHERE d.collection = 'rr' ORDER BY 1]]))
      assert.equal("spec-embed", r.rows[1].embedding_model)
      assert.equal("{1,0,0.01}", r.rows[1].e)
      assert.equal("{0,1,0.01}", r.rows[2].e)
      local req = json.decode(emb.requests[#emb.requests].body)
      assert.equal("spec-embed", req.model)
      assert.equal("Bearer " .. API_KEY, emb.requests[#emb.requests].headers["authorization"])
      -- the same files again, same model: unchanged; no embeddings asked
      local n = #emb.requests
      report = assert(import.run(pool, rr_dir, { collection = "rr", embedder = e }))
      assert.equal(2, report.unchanged)
      assert.equal(n, #emb.requests)
    end)

    it("re-ranks the full-text candidates by cosine when a model is configured", function()
      local _, plain = run_kb({ query = "restart job beta", collection = "rr" })
      assert.equal("restart-a.md", plain.output.results[1].document)
      local exec, sr = run_kb({ query = "restart job beta", collection = "rr", embedding_model = "spec-embed" })
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.is_true(o.reranked)
      assert.equal("spec-embed", o.embedding_model)
      assert.equal("restart-b.md", o.results[1].document)
      assert.near(1, o.results[1].vector_score, 1e-3)
      assert.equal(o.results[1].vector_score, o.results[1].score)
      assert.near(0, o.results[2].vector_score, 1e-2)
      assert.is_true(sr.tokens > 0)
      local last = emb.requests[#emb.requests]
      assert.same({ "restart job beta" }, json.decode(last.body).input)
      assert.matches("^00%-" .. exec.trace_id:gsub("-", "") .. "%-", last.headers["traceparent"])
    end)

    it("chunks without embeddings of that model come after the re-ranked ones", function()
      local _, sr = run_kb({ query = "restart job beta deadlock", embedding_model = "spec-embed", limit = 20 })
      local seen_plain = false
      for _, r in ipairs(sr.output.results) do
        if r.vector_score == json.null then seen_plain = true else assert.is_false(seen_plain) end
      end
      assert.is_true(seen_plain)
    end)

    it("an endpoint that refuses the key fails at once, naming the variable, never the key", function()
      emb.fail = function()
        return 401, nil, { error = { message = "Incorrect API key provided: " .. API_KEY, type = "invalid_request_error" } }
      end
      local exec, sr = run_kb({ query = "restart", embedding_model = "spec-embed" }, nil, { attempts = 3 })
      emb.fail = nil
      assert.equal("failed", exec.status)
      assert.equal("kb (step k): embeddings: POST " .. emb.url .. "/embeddings: HTTP 401: Incorrect API key provided: "
        .. "[redacted] (check OPENAI_API_KEY)", sr.error)
      assert.equal(1, sr.attempts)
    end)

    it("503 from the endpoint is retried", function()
      local calls = 0
      emb.fail = function()
        calls = calls + 1
        if calls == 1 then return 503, { ["retry-after"] = "0" }, { error = { message = "overloaded" } } end
      end
      local exec, sr = run_kb({ query = "restart", embedding_model = "spec-embed" }, nil, { attempts = 3 })
      emb.fail = nil
      assert.equal("completed", exec.status, sr.error)
      assert.equal(2, sr.attempts)
    end)

    it("an import whose embeddings fail changes nothing", function()
      write_tree(rr_dir, { ["restart-b.md"] = "# Other note\n\nA restart note, changed. beta\n" })
      emb.fail = function() return 500, nil, { error = { message = "boom" } } end
      local e = assert(embeddings.client({ model = "spec-embed" }))
      local before = docs("rr")
      local report, err = import.run(pool, rr_dir, { collection = "rr", embedder = e })
      emb.fail = nil
      assert.is_nil(report)
      assert.matches("HTTP 500: boom", err, 1, true)
      assert.same(before, (docs("rr")))
    end)

    it("never lets the key into a record or a log line", function()
      for _, s in ipairs(captured) do assert.is_nil(s:find(API_KEY, 1, true)) end
    end)
  end)

end)
