-- chorus.cli.db: the database options shared by the commands that use
-- PostgreSQL (--db URL, else DATABASE_URL) and opening the pool and store.
local M = {}

M.SPEC = { type = "string", arg = "URL", help = "PostgreSQL URL (default: $DATABASE_URL)" }

-- url(opts) -> url | nil
function M.url(opts)
  local u = opts.db or os.getenv("DATABASE_URL")
  if u == nil or u == "" then return nil end
  return u
end

-- open(url, opts) -> {pool, store} | nil, err. Checks the connection and
-- that the schema is migrated, so commands fail with a clear message.
function M.open(url, opts)
  local pg = require "chorus.db.pg"
  local pool = pg.pool(url, { size = opts and opts.pool_size or 8, connect_timeout_ms = 5000 })
  local res, err = pool:query("SELECT to_regclass('orchestration_executions') IS NOT NULL AS ready")
  if not res then
    pool:close()
    return nil, ("cannot connect to the database: %s"):format(tostring(err))
  end
  if not res.rows[1].ready and not (opts and opts.no_schema) then
    pool:close()
    return nil, "the database has no Chorus schema yet: run `chorus migrate` first"
  end
  local store = require("chorus.store.pg").new({ pool = pool })
  -- Agents that read the database (kb) use this pool.
  require("chorus.run.resources").set_pg(pool)
  return { pool = pool, store = store }
end

M.KB_SPEC = { type = "string", arg = "URL",
  help = "the knowledge base's PostgreSQL when it is not --db's (default: $CHORUS_KB_DB)" }

-- open_kb(opts) -> pool | false (none asked for) | nil, err: the knowledge
-- base's own database (--kb-db, else CHORUS_KB_DB), for the kb agent. It
-- needs the kb tables (chorus migrate) and nothing else.
function M.open_kb(opts)
  local url = opts["kb-db"] or os.getenv("CHORUS_KB_DB")
  if url == nil or url == "" then return false end
  local pool = require("chorus.db.pg").pool(url, { size = 4, connect_timeout_ms = 5000 })
  local res, err = pool:query("SELECT to_regclass('kb_chunks') IS NOT NULL AS ready")
  if not res then
    pool:close()
    return nil, ("cannot connect to the knowledge base's database (--kb-db / CHORUS_KB_DB): %s"):format(tostring(err))
  end
  if not res.rows[1].ready then
    pool:close()
    return nil, "the knowledge base's database (--kb-db / CHORUS_KB_DB) has no kb tables: run "
      .. "`chorus migrate --db URL`, then `chorus kb import DIR --db URL`"
  end
  require("chorus.run.resources").set_kb_pg(pool)
  return pool
end

-- need(opts, cmd) -> url | nil after printing why
function M.need(opts, cmd)
  local u = M.url(opts)
  if not u then io.stderr:write(("chorus %s: no database: give --db URL or set DATABASE_URL\n"):format(cmd)) end
  return u
end

return M
