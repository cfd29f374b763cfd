-- chorus.run.service: the one way in. The REST routes, the WebSocket
-- routes and `chorus serve`'s wiring start and control executions through
-- it; `chorus run` and the nodes prepare configs through the same engine
-- cache (engine:prepare). Whatever the door, a stored config is found,
-- checked active and prepared the same way, and the same runner starts it.
--
--   service.new({engine, store, runner}) -> svc
--   svc:stored(ref, scope) -> cfg, record | nil, message, code [, errors]
--     ref: a stored config's id or name, as the scope sees it. code:
--     "not_found", "inactive", "invalid_config" (errors: what no longer
--     validates against the loaded scripts)
--   svc:submit(cfg, input, opts) -> summary | nil, message, code
--     the runner's (codes "invalid_input", "busy", "conflict", ...)
--   svc:execute(ref, input, opts, scope) -> summary | nil, message, code
--     [, errors]: stored, then submit with the record's id and version
--   svc:control(trace, action, args, scope) -> true | nil, message, code
--
-- A runner (chorus.run.memory in memory, chorus.run.node over
-- PostgreSQL) implements submit(cfg, input, opts), control(key, action,
-- args, scope) and close(); both apply a control to a live execution
-- with chorus.run.control.
local new_tab = require "table.new"

local M = {}

local Service = {}
Service.__index = Service

function M.new(opts)
  assert(opts.engine and opts.store and opts.runner, "service.new: engine, store and runner required")
  return setmetatable({ engine = opts.engine, store = opts.store, runner = opts.runner }, Service)
end

function Service:stored(ref, scope)
  -- Read only here: the store may hand out its own record (no copy).
  local rec = self.store:get_config(ref, scope, true)
  if not rec then return nil, ("no config '%s'"):format(tostring(ref)), "not_found" end
  if not rec.is_active then return nil, ("config '%s' is not active"):format(rec.name), "inactive" end
  local cfg, errs = self.engine:prepare({ name = rec.name, description = rec.description, strategy = rec.strategy,
    steps = rec.steps, metadata = rec.metadata }, rec.id .. ":" .. tostring(rec.version))
  if not cfg then
    return nil, "the stored config is no longer valid against the loaded scripts", "invalid_config", errs
  end
  return cfg, rec
end

function Service:submit(cfg, input, opts)
  return self.runner:submit(cfg, input, opts)
end

function Service:execute(ref, input, opts, scope)
  local cfg, rec, code, errs = self:stored(ref, scope)
  if not cfg then return nil, rec, code, errs end
  -- A copy made whole: one grown key by key is rehashed at each power of
  -- two (twice a request).
  local o = new_tab(0, 12)
  for k, v in pairs(opts or {}) do o[k] = v end
  o.config_id, o.config_version = rec.id, rec.version
  return self.runner:submit(cfg, input, o)
end

function Service:control(trace, action, args, scope)
  return self.runner:control(trace, action, args or {}, scope)
end

return M
