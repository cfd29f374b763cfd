-- Executions: start one (answered at once with 202 while it runs in the
-- background), read its status, list them, and control them.
--   POST /api/v1/orchestrations/execute/{config}   {"input": {...}} -> 202
--   POST /api/v1/orchestrations/execute            {"config": {...}, "input": {...}} -> 202 (ad hoc)
--   GET  /api/v1/orchestrations/status/{trace_id}  the record with every step
--   GET  /api/v1/orchestrations/executions         ?config&config_id&session_id&status&since&until
--                                                  &user_id&tenant_id&limit&offset
--                                                  (+ totals: tokens and cost of every match)
--   POST /api/v1/orchestrations/executions/{trace_id}/pause|resume|cancel
--   POST /api/v1/orchestrations/executions/{trace_id}/steps/{step_id}/approve|reject
-- Idempotency-Key (header, up to 200 characters): a retried execute with
-- the same key in the same tenant returns the first execution (200, not
-- 202) instead of starting another. Executions are visible to the user
-- who started them; admins see all. Records are chorus.api.present's.
local api = require "chorus.api"
local body = require "chorus.api.body"
local errors = require "chorus.api.errors"
local present = require "chorus.api.present"
local json = require "chorus.json"
local callbacks = require "chorus.run.callbacks"

local M = {}

local BASE = "/api/v1/orchestrations"
local STATUSES = require("chorus.engine.states").execution -- its keys: every execution status

local function read_input(doc)
  local input = doc.input
  if input == nil or input == json.null then input = doc.input_data end
  if input == nil or input == json.null then return {} end
  if type(input) ~= "table" or (next(input) ~= nil and json.is_array(input)) then
    return nil, errors.validation({ { path = "input", message = "must be a JSON object" } })
  end
  return input
end

local function valid_session(sid)
  return type(sid) == "string" and #sid >= 1 and #sid <= 200
end

-- read_extras(doc, input) -> extras | nil, {path, message}...: what an
-- execute request (REST body, the WebSocket's first message) may carry
-- besides its input (the plan's API): callback_url (a webhook of this
-- execution's own, see chorus.run.callbacks), session_id (the client's
-- conversation; when absent, the input's own session_id string, where
-- the plan's clients put it), metadata (free, stored).
function M.read_extras(doc, input)
  local x, errs = {}, {}
  local url = doc.callback_url
  if url ~= nil and url ~= json.null then
    local ok, why = callbacks.check_url(url)
    if not ok then errs[#errs + 1] = { path = "callback_url", message = why } end
    if type(url) == "string" and #url > 2048 then
      errs[#errs + 1] = { path = "callback_url", message = "must be at most 2048 characters" }
    end
    x.callback_url = url
  end
  local sid = doc.session_id
  if sid ~= nil and sid ~= json.null then
    if not valid_session(sid) then
      errs[#errs + 1] = { path = "session_id", message = "must be a string of 1 to 200 characters" }
    end
    x.session_id = sid
  elseif input and valid_session(input.session_id) then
    x.session_id = input.session_id
  end
  local md = doc.metadata
  if md ~= nil and md ~= json.null then
    if type(md) ~= "table" or (next(md) ~= nil and json.is_array(md)) then
      errs[#errs + 1] = { path = "metadata", message = "must be a JSON object" }
    elseif next(md) ~= nil then
      x.metadata = md
    end
  end
  if #errs > 0 then return nil, errs end
  return x
end

local function idempotency_key(ctx)
  local k = ctx.req.headers["idempotency-key"]
  if k == nil then return nil end
  if #k == 0 or #k > 200 then
    return nil, errors.response("bad_request", "Idempotency-Key must be 1 to 200 characters")
  end
  if not require("chorus.api.router").text(k) then
    return nil, errors.response("bad_request", "Idempotency-Key must be UTF-8 text without NUL")
  end
  return k
end

-- start(ctx, doc, input, ref, cfg): through the service, a stored config
-- (ref: its id or name) or an ad hoc one (cfg, already validated).
local function start(ctx, doc, input, ref, cfg)
  local ikey, s, h, b = idempotency_key(ctx)
  if s then return s, h, b end
  local x, xerrs = M.read_extras(doc, input)
  if not x then return errors.validation(xerrs) end
  local p = ctx.principal
  local opts = { user_id = p.user_id, tenant_id = p.tenant_id, idempotency_key = ikey,
    callback_url = x.callback_url, session_id = x.session_id, metadata = x.metadata }
  local front = ctx.service.front
  local res, err, code, errs
  if ref then
    res, err, code, errs = front:execute(ref, input, opts, api.scope(p))
  else
    res, err, code = front:submit(cfg, input, opts)
  end
  if not res then return errors.refused(code, err, errs) end
  res.status_url = BASE .. "/status/" .. res.trace_id
  ctx.req.trace_id = res.trace_id -- for the access log
  return api.json(res.replayed and 200 or 202, res, { location = res.status_url })
end

local function trace_param(ctx)
  local t = ctx.params.trace_id
  if not api.is_uuid(t) then
    return nil, errors.response("bad_request", "trace_id must be a UUID",
      { { path = "trace_id", message = "must be a UUID" } })
  end
  return t:lower()
end

local function control(ctx, action, args)
  local trace, s, h, b = trace_param(ctx)
  if not trace then return s, h, b end
  local ok, err, code = ctx.service.front:control(trace, action, args, api.scope(ctx.principal))
  if not ok then
    if code == "not_found" then return errors.response("not_found", ("no execution %s"):format(trace)) end
    if code == "invalid_state" then return errors.response("invalid_state", err) end
    return errors.response("unavailable", err)
  end
  local rec = ctx.service.store:get_record(trace)
  return api.json(200, { trace_id = trace, action = action, status = rec and rec.status })
end

function M.register(app)
  app:route("POST", BASE .. "/execute/{config}", { auth = "execute" }, function(ctx)
    local doc, s, h, b = body.object(ctx.req, { optional = true })
    if not doc then return s, h, b end
    local input
    input, s, h, b = read_input(doc)
    if not input then return s, h, b end
    return start(ctx, doc, input, ctx.params.config)
  end)

  app:route("POST", BASE .. "/execute", { auth = "execute" }, function(ctx)
    local doc, s, h, b = body.object(ctx.req)
    if not doc then return s, h, b end
    local input
    input, s, h, b = read_input(doc)
    if not input then return s, h, b end
    if type(doc.config) ~= "table" then
      return errors.validation({ { path = "config", message = "is required (an orchestration config)" } })
    end
    local cfg, errs = ctx.service.engine:validate(doc.config)
    if not cfg then
      for _, e in ipairs(errs) do e.path = "config." .. e.path end
      return errors.validation(errs, "the config is invalid")
    end
    return start(ctx, doc, input, nil, cfg)
  end)

  app:route("GET", BASE .. "/status/{trace_id}", { auth = "read" }, function(ctx)
    local trace, s, h, b = trace_param(ctx)
    if not trace then return s, h, b end
    local rec, err = ctx.service.store:get_record(trace, api.scope(ctx.principal))
    if err then return errors.response("unavailable", err) end
    if not rec then return errors.response("not_found", ("no execution %s"):format(trace)) end
    return api.json(200, present.execution(rec))
  end)

  app:route("GET", BASE .. "/executions", { auth = "read" }, function(ctx)
    local q, p = ctx.query, ctx.principal
    local limit, s, h, b = api.int_param(q, "limit", 50, 1, 1000)
    if not limit then return s, h, b end
    local offset
    offset, s, h, b = api.int_param(q, "offset", 0, 0, 1e9)
    if not offset then return s, h, b end
    if q.status and not STATUSES[q.status] then
      return errors.response("bad_request", ("unknown status %q"):format(q.status),
        { { path = "query.status",
          message = "must be one of pending, running, paused, compensation, completed, failed, cancelled" } })
    end
    local since, before
    since, s, h, b = api.time_param(q, "since")
    if s then return s, h, b end
    before, s, h, b = api.time_param(q, "until")
    if s then return s, h, b end
    if q.config_id and not api.is_uuid(q.config_id) then
      return errors.response("bad_request", ("query parameter config_id must be a UUID, got %q"):format(q.config_id),
        { { path = "query.config_id", message = "must be a UUID (a config's id; ?config= takes a name)" } })
    end
    if q.session_id and not valid_session(q.session_id) then
      return errors.response("bad_request", "query parameter session_id must be 1 to 200 characters",
        { { path = "query.session_id", message = "must be 1 to 200 characters" } })
    end
    local filter = { config = q.config, config_id = q.config_id and q.config_id:lower(), session_id = q.session_id,
      status = q.status, since = since, before = before, limit = limit, offset = offset }
    if p.admin then
      filter.tenant_id, filter.user_id = q.tenant_id, q.user_id
    else
      filter.tenant_id, filter.user_id = p.tenant_id, p.user_id
    end
    local items, total, totals = ctx.service.store:list_executions(filter)
    if not items then return errors.response("unavailable", total) end
    return api.json(200, { items = present.list(items, present.summary), total = total, limit = limit,
      offset = offset, totals = totals })
  end)

  for _, action in ipairs({ "pause", "resume", "cancel" }) do
    app:route("POST", BASE .. "/executions/{trace_id}/" .. action, { auth = "control" }, function(ctx)
      return control(ctx, action)
    end)
  end

  for _, action in ipairs({ "approve", "reject" }) do
    app:route("POST", BASE .. "/executions/{trace_id}/steps/{step_id}/" .. action, { auth = "control" }, function(ctx)
      local doc, s, h, b = body.object(ctx.req, { optional = true })
      if not doc then return s, h, b end
      if doc.reason ~= nil and type(doc.reason) ~= "string" then
        return errors.validation({ { path = "reason", message = "must be a string" } })
      end
      return control(ctx, action, { step_id = ctx.params.step_id, reason = doc.reason,
        by = ctx.principal.user_id or ctx.principal.key_id })
    end)
  end
end

return M
