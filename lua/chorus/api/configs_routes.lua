-- Configs: create, list, get, update, delete, old versions.
--   POST   /api/v1/orchestrations/configs              201 | 409 | 422
--   GET    /api/v1/orchestrations/configs              ?strategy&active (or is_active)&search&limit&offset
--   GET    /api/v1/orchestrations/configs/{key}        key = id or name
--   PUT    /api/v1/orchestrations/configs/{key}        version + 1
--   PATCH  /api/v1/orchestrations/configs/{key}        some fields; is_active alone: no new version
--   DELETE /api/v1/orchestrations/configs/{key}        soft delete, 204
--   GET    /api/v1/orchestrations/configs/{key}/versions/{version}
-- A tenant sees its configs and the global ones; only admins create or
-- change global configs ("is_global": true in the body, the plan's name;
-- "global" is the same). Responses are chorus.api.present's config.
local api = require "chorus.api"
local body = require "chorus.api.body"
local errors = require "chorus.api.errors"
local present = require "chorus.api.present"
local json = require "chorus.json"

local M = {}

local patch_config

local BASE = "/api/v1/orchestrations/configs"

-- take_global(doc) -> true | false | nil (not given), the field's name,
-- or nil, errors: is_global (the plan's name) or global, taken off the
-- document; both given must agree. json.null is "not given".
local function take_global(doc)
  local errs, value, name = {}, nil, nil
  for _, k in ipairs({ "is_global", "global" }) do
    local v = doc[k]
    doc[k] = nil
    if v ~= nil and v ~= json.null then
      if type(v) ~= "boolean" then
        errs[#errs + 1] = { path = k, message = "must be a boolean" }
      elseif value ~= nil and v ~= value then
        errs[#errs + 1] = { path = k, message = "contradicts is_global (they are the same field)" }
      else
        value, name = v, name or k
      end
    end
  end
  if #errs > 0 then return nil, errs end
  return value, nil, name
end

-- Splits the API-only fields off the config document.
local function read_config(ctx)
  local doc, s, h, b = body.object(ctx.req)
  if not doc then return nil, s, h, b end
  local global, gerrs, global_name = take_global(doc)
  if gerrs then return nil, errors.validation(gerrs) end
  local cfg, errs = ctx.service.engine:validate(doc)
  if not cfg then return nil, errors.validation(errs, "the config is invalid") end
  return cfg, global, global_name
end

local function find(ctx)
  local store, p = ctx.service.store, ctx.principal
  local c = store:get_config(ctx.params.key, api.scope(p))
  if not c then
    return nil, errors.response("not_found", ("no config '%s'"):format(ctx.params.key))
  end
  return c
end

local function may_change(p, c)
  if p.admin then return true end
  if c.tenant_id == nil then return false, "only an admin can change a global config" end
  return c.tenant_id == p.tenant_id, "not your tenant's config"
end

-- What PATCH may change; everything else in its body is an error.
local PATCHABLE = { name = true, description = true, strategy = true, steps = true, settings = true,
  metadata = true, is_active = true }

-- patch_config(ctx, c, patch): the stored config with the fields of patch
-- over it, validated as a whole; is_active alone is no new version.
patch_config = function(ctx, c, patch)
  local global, errs, global_name = take_global(patch)
  errs = errs or {}
  local content = false
  for k in pairs(patch) do
    if not PATCHABLE[k] then
      errs[#errs + 1] = { path = tostring(k), message = "unknown field (a PATCH may change name, description, "
        .. "strategy, steps, settings, metadata, is_active)" }
    elseif k ~= "is_active" then
      content = true
    end
  end
  local active = patch.is_active
  if active == json.null then active = nil end
  if active ~= nil and type(active) ~= "boolean" then
    errs[#errs + 1] = { path = "is_active", message = "must be a boolean" }
  end
  if global ~= nil and global ~= (c.tenant_id == nil) then
    errs[#errs + 1] = { path = global_name, message = "cannot be changed by an update" }
  end
  if #errs > 0 then return errors.validation(errs) end
  local by = ctx.principal.user_id
  local store = ctx.service.store
  local u, err, code
  if content then
    local doc = { name = c.name, description = c.description, strategy = c.strategy, metadata = c.metadata,
      steps = c.steps }
    for _, k in ipairs({ "name", "description", "strategy", "metadata" }) do
      if patch[k] ~= nil then doc[k] = patch[k] end
    end
    local stored = c.steps or {}
    if patch.steps ~= nil then
      -- Either form; settings not given stay as they were.
      doc.steps = patch.steps
      local flat = type(patch.steps) == "table" and json.is_array(patch.steps)
      if flat then doc.settings = patch.settings or stored.settings end
    elseif patch.settings ~= nil then
      doc.steps = { steps = stored.steps, settings = patch.settings }
    end
    local cfg, verrs = ctx.service.engine:validate(doc)
    if not cfg then return errors.validation(verrs, "the config is invalid") end
    cfg.is_active = active
    u, err, code = store:update_config(c.id, cfg, by)
  elseif active ~= nil then
    u, err, code = store:set_config_active(c.id, active, by)
  else
    return api.json(200, present.config(c))
  end
  if not u then
    if code == "conflict" or code == "not_found" then return errors.response(code, err) end
    return errors.response("unavailable", err)
  end
  return api.json(200, present.config(u))
end

function M.register(app)
  app:route("POST", BASE, { auth = "write" }, function(ctx)
    local cfg, global, h, b = read_config(ctx)
    if not cfg then return global, h, b end
    local p = ctx.principal
    if global and not p.admin then
      return errors.response("forbidden", "only an admin can create a global config (is_global: true)")
    end
    local c, err, code = ctx.service.store:create_config(cfg, { tenant_id = p.tenant_id, user_id = p.user_id, global = global })
    if not c then
      if code == "conflict" then return errors.response("conflict", err) end
      return errors.response("unavailable", err)
    end
    return api.json(201, present.config(c), { location = BASE .. "/" .. c.id })
  end)

  app:route("GET", BASE, { auth = "read" }, function(ctx)
    local q, p = ctx.query, ctx.principal
    local limit, s, h, b = api.int_param(q, "limit", 50, 1, 1000)
    if not limit then return s, h, b end
    local offset
    offset, s, h, b = api.int_param(q, "offset", 0, 0, 1e9)
    if not offset then return s, h, b end
    -- active, or is_active (the plan's name for it)
    local active
    for _, name in ipairs({ "active", "is_active" }) do
      local v = q[name]
      if v ~= nil then
        if v ~= "true" and v ~= "false" then
          return errors.response("bad_request", ("query parameter %s must be true or false"):format(name),
            { { path = "query." .. name, message = "must be true or false" } })
        end
        if active ~= nil and active ~= (v == "true") then
          return errors.response("bad_request", "query parameters active and is_active contradict each other",
            { { path = "query.is_active", message = "contradicts active (they are the same filter)" } })
        end
        active = v == "true"
      end
    end
    local items, total = ctx.service.store:list_configs({
      tenant_id = not p.admin and p.tenant_id or q.tenant_id, strategy = q.strategy,
      owner_id = q.owner, active = active, search = q.search, limit = limit, offset = offset,
    })
    if not items then return errors.response("unavailable", total) end
    return api.json(200, { items = present.list(items, present.config), total = total, limit = limit,
      offset = offset })
  end)

  app:route("GET", BASE .. "/{key}", { auth = "read" }, function(ctx)
    local c, s, h, b = find(ctx)
    if not c then return s, h, b end
    return api.json(200, present.config(c))
  end)

  app:route("PUT", BASE .. "/{key}", { auth = "write" }, function(ctx)
    local c, s, h, b = find(ctx)
    if not c then return s, h, b end
    local allowed, why = may_change(ctx.principal, c)
    if not allowed then return errors.response("forbidden", why) end
    -- read_config: the config, is_global and its field name, or nil and a response
    local cfg, global, name, rb = read_config(ctx)
    if not cfg then return global, name, rb end
    if global ~= nil and global ~= (c.tenant_id == nil) then
      return errors.validation({ { path = name, message = "cannot be changed by an update" } })
    end
    local u, err, code = ctx.service.store:update_config(c.id, cfg, ctx.principal.user_id)
    if not u then
      if code == "conflict" or code == "not_found" then return errors.response(code, err) end
      return errors.response("unavailable", err)
    end
    return api.json(200, present.config(u))
  end)

  app:route("PATCH", BASE .. "/{key}", { auth = "write" }, function(ctx)
    local c, s, h, b = find(ctx)
    if not c then return s, h, b end
    local allowed, why = may_change(ctx.principal, c)
    if not allowed then return errors.response("forbidden", why) end
    local patch
    patch, s, h, b = body.object(ctx.req)
    if not patch then return s, h, b end
    return patch_config(ctx, c, patch)
  end)

  app:route("DELETE", BASE .. "/{key}", { auth = "write" }, function(ctx)
    local c, s, h, b = find(ctx)
    if not c then return s, h, b end
    local allowed, why = may_change(ctx.principal, c)
    if not allowed then return errors.response("forbidden", why) end
    local ok, err, code = ctx.service.store:delete_config(c.id)
    if not ok then
      if code == "not_found" then return errors.response("not_found", err) end
      return errors.response("unavailable", err)
    end
    return 204, {}, ""
  end)

  app:route("GET", BASE .. "/{key}/versions/{version}", { auth = "read" }, function(ctx)
    local c, s, h, b = find(ctx)
    if not c then return s, h, b end
    local v = tonumber(ctx.params.version)
    if not v or v ~= math.floor(v) or v < 1 or v > 1e9 then
      return errors.response("bad_request", "version must be a positive integer",
        { { path = "version", message = "must be a positive integer" } })
    end
    local old = ctx.service.store:config_version(c.id, v)
    if not old then return errors.response("not_found", ("config '%s' has no version %d"):format(c.name, v)) end
    return api.json(200, present.config_version(old))
  end)
end

return M
