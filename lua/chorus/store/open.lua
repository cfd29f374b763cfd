-- chorus.store.open: a store over a database URL, for whoever needs one
-- (chorus serve, the CLI's commands, a worker): the pool, checked, and
-- the PostgreSQL store on it; the knowledge base's own pool.
--
--   open(url, opts) -> {pool, store} | nil, err: checks the connection and
--     that the schema is migrated (opts.no_schema: not), so a command fails
--     with a clear message. opts.pool_size (8). The kb agent searches the
--     same database unless it has its own (open_kb).
--   open_kb(url) -> pool | nil, err: the knowledge base's database when it
--     is not the executions' (--kb-db / CHORUS_KB_DB); it needs the kb
--     tables and nothing else.
local pg = require "chorus.db.pg"
local resources = require "chorus.run.resources"

local M = {}

function M.open(url, opts)
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
  resources.set_pg(pool)
  return { pool = pool, store = require("chorus.store.pg").new({ pool = pool }) }
end

function M.open_kb(url)
  local pool = pg.pool(url, { size = 4, connect_timeout_ms = 5000 })
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
  resources.set_kb_pg(pool)
  return pool
end

return M
