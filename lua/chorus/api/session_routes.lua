-- Who the caller is: the admin page signs in by asking this with the key
-- it was given, and shapes itself by the role (the server still checks
-- every call).
--   GET /api/v1/whoami -> {role, tenant_id, user_id, key_id, can: {...}}
local api = require "chorus.api"
local auth = require "chorus.api.auth"

local M = {}

local ACTIONS = { "read", "write", "execute", "control", "admin" }

function M.register(app)
  app:route("GET", "/api/v1/whoami", { auth = "read" }, function(ctx)
    local p = ctx.principal
    local can = {}
    for _, a in ipairs(ACTIONS) do can[a] = auth.can(p, a) end
    return api.json(200, { role = p.role, tenant_id = p.tenant_id, user_id = p.user_id, key_id = p.key_id,
      can = can })
  end)
end

return M
