-- chorus.cli.target: what the commands for a running system talk to:
-- a server's API, or PostgreSQL directly for what the database can answer.
--
--   resolve(opts, {db = true}) -> target | nil, err (a usage error: exit 2)
--     target.kind = "server": target.remote (chorus.cli.remote)
--     target.kind = "db":     target.url; open_db(target) -> {pool, store} | nil, err
--
-- Which one, first match wins:
--   --server URL | --db URL (not both) | $CHORUS_SERVER | $DATABASE_URL
--   (commands the database can answer) | http://127.0.0.1:8080
-- The server's API key comes from $CHORUS_API_KEY only: a key on the
-- command line would be in the shell's history and in `ps` for everyone.
local remote = require "chorus.cli.remote"

local M = {}

M.SERVER = { type = "string", arg = "URL", help = "the server (default: $CHORUS_SERVER, else " .. remote.DEFAULT_SERVER .. ")" }
M.DB = { type = "string", arg = "URL", help = "read and control through PostgreSQL instead (default: $DATABASE_URL)" }

-- The help texts' word on it, for commands that can use a database and
-- for those that need a server.
M.FOOTER = "Talks to --server URL or --db URL when given, else to $CHORUS_SERVER, else to $DATABASE_URL's\n"
  .. "database, else to " .. remote.DEFAULT_SERVER .. ". The API key is read from $CHORUS_API_KEY (never from the\n"
  .. "command line)."
M.SERVER_FOOTER = "The server is --server URL, else $CHORUS_SERVER, else " .. remote.DEFAULT_SERVER .. ".\n"
  .. "The API key is read from $CHORUS_API_KEY (never from the command line)."

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

local function server(url)
  local base, err = remote.normalize(url)
  if not base then return nil, err end
  return { kind = "server", base = base, remote = remote.new({ base = base, key = env("CHORUS_API_KEY") }) }
end

-- resolve(opts, how) -> target | nil, err. how.db: the command can use
-- the database; how.what: its name, for the error when it cannot.
function M.resolve(opts, how)
  how = how or {}
  if opts.server and opts.db then return nil, "give either --server or --db, not both" end
  if opts.server then return server(opts.server) end
  if opts.db then
    if not how.db then
      return nil, ("%s needs a server (--server URL): the database alone cannot answer it"):format(how.what or "this")
    end
    return { kind = "db", url = opts.db }
  end
  local s = env("CHORUS_SERVER")
  if s then return server(s) end
  local d = how.db and env("DATABASE_URL")
  if d then return { kind = "db", url = d } end
  return server(remote.DEFAULT_SERVER)
end

-- open_db(target) -> {pool, store} | nil, err
function M.open_db(t)
  return require("chorus.store.open").open(t.url, { pool_size = 2 })
end

return M
