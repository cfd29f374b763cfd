-- chorus.resources: what the process opened that agents may use. Today the
-- PostgreSQL pool of --db / DATABASE_URL, set by chorus.cli.db.open (every
-- command that opens the database: run, serve, worker...), so the kb agent
-- searches the same database the executions live in.
--
--   set_pg(pool)   (nil forgets it)
--   pg() -> pool | nil   (nil also once the pool was closed)
local M = {}

local pool

function M.set_pg(p) pool = p end

function M.pg()
  if pool and pool.closed then return nil end
  return pool
end

return M
