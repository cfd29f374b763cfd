-- chorus keys create --tenant T --user U --role R | list | revoke ID_OR_PREFIX
-- API keys in the database. `create` prints the new key on its last line
-- (it is shown once: only its hash is stored).
local args = require "chorus.cli.args"
local db = require "chorus.cli.db"
local auth = require "chorus.api.auth"

local SPEC = {
  db = db.SPEC,
  tenant = { type = "string", arg = "T", help = "the key's tenant" },
  user = { type = "string", arg = "U", help = "the key's user" },
  role = { type = "string", arg = "R", help = "viewer | operator | admin" },
  help = { type = "flag", short = "h", help = "show this help" },
}
local USAGE = "usage: chorus keys create --tenant T --user U --role R | list [--tenant T] | revoke ID [--db URL]\n\n"

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus keys: " .. pos .. "\n") return 2 end
  if opts.help then io.stdout:write(USAGE .. args.usage(SPEC, { "db", "tenant", "user", "role", "help" })) return 0 end
  local action = pos[1]
  if action == "create" then
    if not opts.tenant or not opts.user or not auth.ROLES[opts.role or ""] then
      io.stderr:write("chorus keys create: needs --tenant, --user and --role viewer|operator|admin\n")
      return 2
    end
  elseif action == "revoke" then
    if not pos[2] then io.stderr:write("chorus keys revoke: which key? (id or prefix)\n") return 2 end
  elseif action ~= "list" then
    io.stderr:write(USAGE)
    return 2
  end
  local url = db.need(opts, "keys")
  if not url then return 2 end
  local d, err = require("chorus.store.open").open(url, { pool_size = 1 })
  if not d then io.stderr:write("chorus keys: " .. err .. "\n") return 1 end
  local code = 0
  if action == "create" then
    local key, k = auth.generate()
    local rec, cerr = d.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = opts.tenant,
      user_id = opts.user, role = opts.role })
    if rec then
      io.stdout:write(("created %s key %s for %s in tenant %s\n%s\n"):format(rec.role, rec.prefix, rec.user_id, rec.tenant_id, key))
    else
      io.stderr:write("chorus keys: " .. tostring(cerr) .. "\n")
      code = 1
    end
  elseif action == "list" then
    local list, lerr = d.store:list_keys({ tenant_id = opts.tenant })
    if list then
      for _, k in ipairs(list) do
        io.stdout:write(("%s  %-12s %-8s %-16s %-16s %s\n"):format(k.id, k.prefix, k.role, k.tenant_id or "-",
          k.user_id or "-", k.revoked_at and "revoked" or "active"))
      end
    else
      io.stderr:write("chorus keys: " .. tostring(lerr) .. "\n")
      code = 1
    end
  else
    local ok, rerr = d.store:revoke_key(pos[2])
    if ok then io.stdout:write("revoked\n") else io.stderr:write("chorus keys: " .. tostring(rerr) .. "\n") code = 1 end
  end
  d.pool:close()
  return code
end
