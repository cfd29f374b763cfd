-- The steps of the config an execution ran, for drawing it (the admin
-- page's execution view colours this graph by step status).
--   GET /api/v1/orchestrations/executions/{trace_id}/graph
--     -> {config, config_id, version, as_run, steps: [{id, name, agent,
--        dependencies, is_fallback, fallback_for, consensus_group,
--        approval, on_failure}]}
-- as_run = false when the store no longer has the config as it ran (the
-- memory store's archived executions): the config's current version is
-- drawn instead, and said so.
local api = require "chorus.api"
local errors = require "chorus.api.errors"
local json = require "chorus.json"

local M = {}

local FIELDS = { "id", "name", "agent", "is_fallback", "fallback_for", "consensus_group", "approval", "on_failure" }

local function shape(steps)
  local out = json.array()
  for i, s in ipairs(steps or {}) do
    local d = { dependencies = json.array() }
    for _, f in ipairs(FIELDS) do d[f] = s[f] end
    for j, dep in ipairs(s.dependencies or {}) do d.dependencies[j] = dep end
    out[i] = d
  end
  return out
end

function M.register(app)
  app:route("GET", "/api/v1/orchestrations/executions/{trace_id}/graph", { auth = "read" }, function(ctx)
    local t = ctx.params.trace_id
    if not api.is_uuid(t) then
      return errors.response("bad_request", "trace_id must be a UUID", { { path = "trace_id", message = "must be a UUID" } })
    end
    t = t:lower()
    local store, scope = ctx.service.store, api.scope(ctx.principal)
    local rec, err = store:get_record(t, scope)
    if err then return errors.response("unavailable", err) end
    if not rec then return errors.response("not_found", ("no execution %s"):format(t)) end
    local cfg
    cfg, err = store:execution_config(t, scope)
    if err then return errors.response("unavailable", err) end
    if cfg then
      return api.json(200, { config = cfg.name, config_id = rec.config_id, as_run = true, steps = shape(cfg.steps) })
    end
    local live = store:get_execution(t)
    local c = store:get_config((live and live.config_id) or rec.config_id or rec.config, scope)
    if not c then
      return errors.response("not_found", ("the config of execution %s is no longer available"):format(t))
    end
    return api.json(200, { config = c.name, config_id = c.id, version = c.version, as_run = false,
      steps = shape(c.steps and c.steps.steps) })
  end)
end

return M
