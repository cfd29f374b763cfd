-- chorus.run.resources: what the process opened that agents may use: the
-- PostgreSQL pool of --db / DATABASE_URL, set by chorus.cli.db.open (every
-- command that opens the database: run, serve, worker...), and the
-- knowledge base's own pool when it lives elsewhere (--kb-db /
-- CHORUS_KB_DB, chorus.cli.db.open_kb).
--
--   set_pg(pool), set_kb_pg(pool)   (nil forgets it)
--   pg() -> pool | nil      (nil also once the pool was closed)
--   kb_pg() -> pool | nil   the knowledge base's: its own, else pg()
local M = {}

local pool, kb_pool

function M.set_pg(p) pool = p end
function M.set_kb_pg(p) kb_pool = p end

function M.pg()
  if pool and pool.closed then return nil end
  return pool
end

function M.kb_pg()
  if kb_pool and not kb_pool.closed then return kb_pool end
  return M.pg()
end

return M
