-- chorus.cli.first_run: the admin key of `chorus serve`.
--
-- In memory, the server's only key is CHORUS_ADMIN_KEY; without one, the
-- server makes one at start and prints it once on stderr (never through
-- the log: it appears nowhere else), with the admin page's address and how
-- to keep it across restarts (one JSON record with --log-format json). A
-- malformed CHORUS_ADMIN_KEY is refused (exit 2) with the format. With a
-- database, keys are rows made by `chorus keys create`; the server says
-- so when it finds no admin key.
local auth = require "chorus.api.auth"
local json = require "chorus.json"
local log = require "chorus.log"
local native = require "chorus.native"
local rfc3339 = require "chorus.rfc3339"

local M = {}

-- env_key() -> key | nil (none) | false, message: CHORUS_ADMIN_KEY, checked
function M.env_key()
  local key = os.getenv("CHORUS_ADMIN_KEY")
  if key == nil or key == "" then return nil end
  local ok, why = auth.well_formed(key)
  if not ok then
    return false, ("CHORUS_ADMIN_KEY is not a valid API key: %s. Expected %s; unset it and "
      .. "`chorus serve` makes one and prints it"):format(why, auth.KEY_FORMAT)
  end
  return key
end

-- admin_url(host, port) -> "http://HOST:PORT/admin/" (a wildcard address
-- shown as this machine's name)
function M.admin_url(host, port)
  if host == "0.0.0.0" or host == "::" or host == "" then host = require("chorus.native").hostname() end
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return ("http://%s:%d/admin/"):format(host, port)
end

-- banner(out, key, url [, format]): the one place the made key is ever
-- written. With --log-format json (stderr a stream of JSON records), one
-- record of its own, so that the stream stays parseable: written here,
-- not through chorus.log, which would redact the key.
function M.banner(out, key, url, format)
  if (format or log.format) == "json" then
    -- One write of the whole line: stderr is unbuffered, and the log's
    -- writer thread writes its records to it meanwhile.
    out:write(json.encode({ ts = rfc3339.format(native.time()), level = "warn",
      msg = "serve: no admin key was given (CHORUS_ADMIN_KEY), so this one was made; it is shown only now "
        .. "and lives only in this process: start the server with CHORUS_ADMIN_KEY set to it to keep it",
      admin_key = key, admin_url = url }) .. "\n")
    out:flush()
    return
  end
  out:write(([[

chorus serve: no admin key was given (CHORUS_ADMIN_KEY), so this one was made:

    %s

  Sign in at %s with it, or send it as "Authorization: Bearer <key>"
  (the chorus CLI reads it from CHORUS_API_KEY). It is shown only now and
  lives only in this process: to keep it across restarts, start the server
  with it, e.g. in /etc/chorus/chorus.env or your shell:

    CHORUS_ADMIN_KEY=%s

]]):format(key, url, key))
  out:flush()
end

-- db_notice(out, store): with a database, when it holds no admin key yet
-- (a log record with --log-format json).
function M.db_notice(out, store)
  local keys = store:list_keys({})
  if not keys then return end
  for _, k in ipairs(keys) do
    if k.role == "admin" and not k.revoked_at then return end
  end
  if log.format == "json" then
    log.warn("serve: the database has no admin API key yet (keys live in the database: CHORUS_ADMIN_KEY is not "
      .. "used with one); make one, shown once on its last line: "
      .. "chorus keys create --tenant default --user admin --role admin --db URL")
    return
  end
  out:write("chorus serve: the database has no admin API key yet (keys live in the database: CHORUS_ADMIN_KEY\n"
    .. "  is not used with one). Make one, shown once on its last line:\n"
    .. "    chorus keys create --tenant default --user admin --role admin --db URL\n")
  out:flush()
end

-- keys(opts, db_url) -> keys | nil, exit code (after saying why), for
-- `chorus serve` with its options. keys.key: the memory store's admin key
-- (CHORUS_ADMIN_KEY, or made now); keys.env: what --workers pass their
-- workers (the same key for all); keys.announce(host, port, store): the
-- first-run text, once, when the server listens (the caller does not
-- call it in a worker: its supervisor did).
function M.keys(opts, url)
  local key, kerr = M.env_key()
  if key == false then
    io.stderr:write("chorus serve: " .. kerr .. "\n")
    return nil, 2
  end
  local keys = { key = key }
  if opts["no-auth"] then
    -- No keys at all (chorus.serve logs the warning).
    keys.key, keys.announce = nil, function() end
    return keys
  end
  if url then
    keys.key = nil
    keys.announce = function(_, _, store)
      if key then log.warn("serve: CHORUS_ADMIN_KEY is not used with a database: keys come from `chorus keys create`") end
      if store then
        M.db_notice(io.stderr, store)
      else
        -- The supervisor of --workers has no store of its own.
        local d = require("chorus.store.open").open(url, { pool_size = 1 })
        if d then
          M.db_notice(io.stderr, d.store)
          d.pool:close()
        end
      end
    end
    return keys
  end
  local made = false
  if not key then
    key = auth.generate()
    made = true
  end
  keys.key, keys.env = key, { CHORUS_ADMIN_KEY = key }
  keys.announce = function(host, port)
    if made then M.banner(io.stderr, key, M.admin_url(host, port)) end
  end
  return keys
end

return M
