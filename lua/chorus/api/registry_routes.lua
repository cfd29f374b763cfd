-- The script registry: strategies, agents and aggregators with their
-- versions and load errors; reload on demand (admins).
--   GET  /api/v1/registry
--   POST /api/v1/registry/reload
local api = require "chorus.api"
local json = require "chorus.json"

local M = {}

-- A copy of list t that encodes as [] when empty (cjson writes {}); the
-- registry's own tables are left alone.
local function list_of(t)
  local out = json.array({})
  for i, v in ipairs(t or {}) do out[i] = v end
  return out
end

function M.register(app)
  app:route("GET", "/api/v1/registry", { auth = "read" }, function(ctx)
    local list = ctx.service.engine.registry:list()
    for _, field in ipairs({ "errors", "strategies", "agents", "aggregators" }) do
      list[field] = list_of(list[field])
    end
    return api.json(200, list)
  end)

  app:route("POST", "/api/v1/registry/reload", { auth = "admin" }, function(ctx)
    local reg = ctx.service.engine.registry
    local snap, errs = reg:reload()
    if reg.on_reload then reg.on_reload(snap) end
    return api.json(200, { generation = snap.generation, errors = list_of(errs), reloads = reg.reloads })
  end)
end

return M
