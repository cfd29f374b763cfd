-- chorus.kb.import: makes a knowledge-base collection match a directory of
-- markdown and text files (chorus kb import). Idempotent: a file whose
-- bytes, cut and embeddings model are unchanged is left alone; a changed
-- file's document is updated and its chunks replaced; a file that is gone
-- loses its document. The whole change is one transaction under a lock on
-- the collection (a failed import changes nothing; two imports of one
-- collection run one after the other). Embeddings, when a model is given,
-- are fetched before the transaction (no network wait holds the lock).
--
--   scan(dir) -> {{path = "rel/a.md", full = "/abs/rel/a.md"}...} | nil, err
--   run(pool, dir, opts) -> report | nil, err, info
--     opts: collection ("default"), language ("english"), max_chars (1500),
--           embedder (a chorus.kb.embeddings client, or nil),
--           max_file_bytes (5 MiB)
--     report: {collection, added, updated, unchanged, removed, chunks
--              (written), skipped = {{path, reason}...}, embedding_tokens}
local native = require "chorus.native"
local chunk = require "chorus.kb.chunk"
local json = require "chorus.json"

local format, lower = string.format, string.lower

local M = {}

M.EXTENSIONS = { md = "markdown", markdown = "markdown", txt = "text", text = "text" }

-- scan(dir) -> files, sorted by path (hidden files and directories skipped)
function M.scan(dir)
  local out = {}
  local function walk(abs, rel, depth)
    if depth > 32 then return nil, abs .. ": directories nested too deep" end
    local ents, err = native.list_dir(abs)
    if not ents then return nil, err end
    for _, e in ipairs(ents) do
      if e.name:sub(1, 1) ~= "." then
        local a, r = abs .. "/" .. e.name, rel == "" and e.name or (rel .. "/" .. e.name)
        if e.type == "dir" then
          local ok, werr = walk(a, r, depth + 1)
          if not ok then return nil, werr end
        elseif e.type == "file" then
          local ext = lower(e.name:match("%.([^.]+)$") or "")
          if M.EXTENSIONS[ext] then out[#out + 1] = { path = r, full = a, kind = M.EXTENSIONS[ext] } end
        end
      end
    end
    return true
  end
  local ok, err = walk((dir:gsub("/+$", "")), "", 0)
  if not ok then return nil, err end
  table.sort(out, function(a, b) return a.path < b.path end)
  return out
end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- A file as the database will hold it, or why it is skipped.
local function prepare(file, opts)
  local content, err = read(file.full)
  if not content then return nil, "cannot read: " .. tostring(err) end
  if #content > opts.max_file_bytes then
    return nil, format("larger than %d bytes", opts.max_file_bytes)
  end
  if content:find("%z") then return nil, "holds NUL bytes (not text)" end
  local ok, bad = native.utf8_valid(content)
  if not ok then return nil, format("not UTF-8 (byte %d)", bad) end
  local title, chunks = chunk.split(content, { markdown = file.kind == "markdown", max_chars = opts.max_chars, name = file.path })
  return {
    path = file.path, title = title, chunks = chunks, bytes = #content,
    hash = native.sha256(content),
  }
end

local function same(doc, row, opts)
  return row.content_hash == doc.hash and row.language == opts.language
    and row.chunking == opts.chunking and (row.embedding_model or json.null) == (opts.model or json.null)
end

-- The text embedded for a chunk: where it sits, then what it says.
local function passage(doc, c)
  return doc.title .. (c.heading and (" — " .. c.heading) or "") .. "\n\n" .. c.content
end

local SELECT_DOCS = [[SELECT id, source_path, content_hash, language::text AS language, chunking, embedding_model
  FROM kb_documents WHERE collection = $1]]

local UPSERT_DOC = [[INSERT INTO kb_documents (collection, source_path, title, content_hash, bytes, language,
    chunking, embedding_model, chunk_count)
  VALUES ($1, $2, $3, $4, $5, $6::regconfig, $7, $8, $9)
  ON CONFLICT (collection, source_path) DO UPDATE SET title = EXCLUDED.title,
    content_hash = EXCLUDED.content_hash, bytes = EXCLUDED.bytes, language = EXCLUDED.language,
    chunking = EXCLUDED.chunking, embedding_model = EXCLUDED.embedding_model,
    chunk_count = EXCLUDED.chunk_count, updated_at = now()
  RETURNING id]]

local INSERT_CHUNKS = [[INSERT INTO kb_chunks (document_id, position, heading, content, tsv, embedding)
  SELECT $1, x.position, x.heading, x.content,
    setweight(to_tsvector($2::regconfig, $3 || ' ' || coalesce(x.heading, '')), 'A')
      || setweight(to_tsvector($2::regconfig, x.content), 'B'),
    x.embedding
  FROM jsonb_to_recordset($4::jsonb) AS x(position integer, heading text, content text, embedding real[])]]

-- run(pool, dir, opts) -> report | nil, err, info
function M.run(pool, dir, opts)
  opts = opts or {}
  local o = {
    collection = opts.collection or "default",
    language = opts.language or "english",
    max_chars = opts.max_chars or 1500,
    max_file_bytes = opts.max_file_bytes or 5 * 1024 * 1024,
    embedder = opts.embedder,
  }
  o.chunking = chunk.signature(o.max_chars)
  o.model = o.embedder and o.embedder.model or nil
  local files, err = M.scan(dir)
  if not files then return nil, "cannot read the directory: " .. tostring(err) end
  local report = { collection = o.collection, added = 0, updated = 0, unchanged = 0, removed = 0,
    chunks = 0, skipped = json.array(), embedding_tokens = 0 }

  -- The language must be a text search configuration: checked once, with
  -- a clear word, rather than as a cast error in the middle.
  local lr, lerr = pool:query("SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1) AS ok", o.language)
  if not lr then return nil, "cannot query the database: " .. tostring(lerr) end
  if not lr.rows[1].ok then
    return nil, format("unknown text search configuration '%s' (see \\dF in psql; e.g. english, portuguese, simple)", o.language)
  end

  local existing_res, qerr, qinfo = pool:query(SELECT_DOCS, o.collection)
  if not existing_res then
    if qinfo and qinfo.code == "42P01" then return nil, "the knowledge base tables are missing: run `chorus migrate` first" end
    return nil, "cannot read the collection: " .. tostring(qerr)
  end
  local existing = {}
  for _, r in ipairs(existing_res.rows) do existing[r.source_path] = r end

  local docs, seen = {}, {}
  for _, f in ipairs(files) do
    seen[f.path] = true
    local doc, why = prepare(f, o)
    if not doc then
      report.skipped[#report.skipped + 1] = { path = f.path, reason = why }
    elseif existing[f.path] and same(doc, existing[f.path], o) then
      report.unchanged = report.unchanged + 1
    else
      docs[#docs + 1] = doc
    end
  end
  -- A file that is there but skipped keeps its old document: dropping
  -- knowledge because a file became unreadable would be a silent loss.
  for _, s in ipairs(report.skipped) do seen[s.path] = true end

  if o.embedder then
    local texts = {}
    for _, d in ipairs(docs) do
      for _, c in ipairs(d.chunks) do texts[#texts + 1] = passage(d, c) end
    end
    if #texts > 0 then
      local vecs, usage, info = o.embedder:embed(texts)
      if not vecs then return nil, usage, info end
      report.embedding_tokens = usage.total_tokens
      local i = 0
      for _, d in ipairs(docs) do
        for _, c in ipairs(d.chunks) do
          i = i + 1
          c.embedding = vecs[i]
        end
      end
    end
  end

  local ok, terr = pool:transaction(function(c)
    local r, e = c:query("SELECT pg_advisory_xact_lock(hashtext('chorus.kb:' || $1))", o.collection)
    if not r then return nil, e end
    -- Read again under the lock: another import may have run meanwhile.
    r, e = c:query(SELECT_DOCS, o.collection)
    if not r then return nil, e end
    local now = {}
    for _, row in ipairs(r.rows) do now[row.source_path] = row end
    for _, d in ipairs(docs) do
      local row = now[d.path]
      if row and same(d, row, o) then
        report.unchanged = report.unchanged + 1
      else
        local up
        up, e = c:query(UPSERT_DOC, o.collection, d.path, d.title, d.hash, d.bytes, o.language, o.chunking,
          o.model, #d.chunks)
        if not up then return nil, e end
        local id = up.rows[1].id
        if row then
          r, e = c:query("DELETE FROM kb_chunks WHERE document_id = $1", id)
          if not r then return nil, e end
          report.updated = report.updated + 1
        else
          report.added = report.added + 1
        end
        if #d.chunks > 0 then
          local rows = json.array()
          for i, ch in ipairs(d.chunks) do
            rows[i] = { position = i - 1, heading = ch.heading or json.null, content = ch.content,
              embedding = ch.embedding or json.null }
          end
          r, e = c:query(INSERT_CHUNKS, id, o.language, d.title, rows)
          if not r then return nil, e end
          report.chunks = report.chunks + #d.chunks
        end
      end
    end
    for path, row in pairs(now) do
      if not seen[path] then
        r, e = c:query("DELETE FROM kb_documents WHERE id = $1", row.id)
        if not r then return nil, e end
        report.removed = report.removed + 1
      end
    end
    return true
  end)
  if not ok then return nil, "the import was rolled back: " .. tostring(terr) end
  return report
end

return M
