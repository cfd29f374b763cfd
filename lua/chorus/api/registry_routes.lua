-- The script registry: strategies, agents and aggregators with their
-- versions and load errors; reload on demand (admins).
--   GET  /api/v1/registry
--   POST /api/v1/registry/reload
local api = require "chorus.api"
local json = require "chorus.json"

local M = {}

local with_lines

-- A copy of list t that encodes as [] when empty (cjson writes {}); the
-- registry's own tables are left alone.
local function list_of(t)
  local out = json.array({})
  for i, v in ipairs(t or {}) do out[i] = v end
  return out
end

-- A load error's message names the file and line where Lua found it
-- ("path/x.lua:12: ..."): the line is given apart so a client can point
-- at it. Copies: the registry's own error records stay as they are.
with_lines = function(errs)
  local out = json.array({})
  for i, e in ipairs(errs) do
    local c = {}
    for k, v in pairs(e) do c[k] = v end
    local line = type(e.message) == "string" and e.message:match("%.lua:(%d+):")
    c.line = line and tonumber(line) or nil
    out[i] = c
  end
  return out
end

function M.register(app)
  app:route("GET", "/api/v1/registry", { auth = "read" }, function(ctx)
    local list = ctx.service.engine.registry:list()
    for _, field in ipairs({ "errors", "strategies", "agents", "aggregators" }) do
      list[field] = list_of(list[field])
    end
    list.errors = with_lines(list.errors)
    return api.json(200, list)
  end)

  app:route("POST", "/api/v1/registry/reload", { auth = "admin" }, function(ctx)
    local reg = ctx.service.engine.registry
    local snap, errs = reg:reload()
    if reg.on_reload then reg.on_reload(snap) end
    return api.json(200, { generation = snap.generation, errors = with_lines(errs or {}), reloads = reg.reloads })
  end)
end

return M
