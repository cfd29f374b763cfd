-- chorus migrate [up | status | down N] [--db URL]: applies the SQL
-- migrations in migrations/ (each in a transaction, under an advisory
-- lock; running `up` twice changes nothing).
local args = require "chorus.cli.args"
local db = require "chorus.cli.db"
local migrate = require "chorus.db.migrate"

local SPEC = { db = db.SPEC, help = { type = "flag", short = "h", help = "show this help" } }

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus migrate: " .. pos .. "\n") return 2 end
  local usage = "usage: chorus migrate [up | status | down N] [--db URL]\n\n" .. args.usage(SPEC, { "db", "help" })
  if opts.help then io.stdout:write(usage) return 0 end
  local action = pos[1] or "up"
  local n = tonumber(pos[2])
  if (action ~= "up" and action ~= "status" and action ~= "down") or (action == "down" and not n) or
      (action ~= "down" and #pos > 1) then
    io.stderr:write(usage)
    return 2
  end
  local url = db.need(opts, "migrate")
  if not url then return 2 end
  local d, err = require("chorus.store.open").open(url, { no_schema = true, pool_size = 1 })
  if not d then io.stderr:write("chorus migrate: " .. err .. "\n") return 1 end
  local res
  if action == "up" then
    res, err = migrate.up(d.pool)
    if res then
      io.stdout:write(#res == 0 and "up to date\n" or ("applied %s\n"):format(table.concat(res, ", ")))
    end
  elseif action == "down" then
    res, err = migrate.down(d.pool, n)
    if res then io.stdout:write(("reverted %s\n"):format(#res == 0 and "nothing" or table.concat(res, ", "))) end
  else
    res, err = migrate.status(d.pool)
    if res then
      for _, m in ipairs(res) do
        io.stdout:write(("%03d %-30s %s\n"):format(m.version, m.name,
          m.applied_at and os.date("!applied %Y-%m-%dT%H:%M:%SZ", math.floor(m.applied_at)) or "pending"))
      end
    end
  end
  d.pool:close()
  if not res then io.stderr:write("chorus migrate: " .. tostring(err) .. "\n") return 1 end
  return 0
end
