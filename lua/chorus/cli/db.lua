-- chorus.cli.db: the database options shared by the commands that use
-- PostgreSQL (--db URL, else DATABASE_URL; --kb-db URL, else CHORUS_KB_DB).
local M = {}

M.SPEC = { type = "string", arg = "URL", help = "PostgreSQL URL (default: $DATABASE_URL)" }

-- url(opts) -> url | nil
function M.url(opts)
  local u = opts.db or os.getenv("DATABASE_URL")
  if u == nil or u == "" then return nil end
  return u
end

M.KB_SPEC = { type = "string", arg = "URL",
  help = "the knowledge base's PostgreSQL when it is not --db's (default: $CHORUS_KB_DB)" }

-- open_kb(opts) -> pool | false (none asked for) | nil, err: the knowledge
-- base's own database, from --kb-db, else CHORUS_KB_DB.
function M.open_kb(opts)
  local url = opts["kb-db"] or os.getenv("CHORUS_KB_DB")
  if url == nil or url == "" then return false end
  return require("chorus.store.open").open_kb(url)
end

-- need(opts, cmd) -> url | nil after printing why
function M.need(opts, cmd)
  local u = M.url(opts)
  if not u then io.stderr:write(("chorus %s: no database: give --db URL or set DATABASE_URL\n"):format(cmd)) end
  return u
end

return M
