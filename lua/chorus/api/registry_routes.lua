-- The script registry: strategies, agents and aggregators with their
-- versions and load errors; reload on demand (admins).
--   GET  /api/v1/registry
--   POST /api/v1/registry/reload
local api = require "chorus.api"

local M = {}

function M.register(app)
  app:route("GET", "/api/v1/registry", { auth = "read" }, function(ctx)
    return api.json(200, ctx.service.engine.registry:list())
  end)

  app:route("POST", "/api/v1/registry/reload", { auth = "admin" }, function(ctx)
    local reg = ctx.service.engine.registry
    local snap, errs = reg:reload()
    if reg.on_reload then reg.on_reload(snap) end
    return api.json(200, { generation = snap.generation, errors = errs, reloads = reg.reloads })
  end)
end

return M
