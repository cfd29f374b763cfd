-- chorus.api: the REST API as one function, handle(req) -> status,
-- headers, body, independent of the HTTP server that carries it (specs
-- call it directly; chorus.serve wires it to the H2O binding).
--
-- req: {method, path, query (raw string), headers (lower-case names),
-- body}. Every route is registered by one of chorus/api/*_routes.lua;
-- this file does what all share: authentication, the JSON error shape,
-- 404/405, and turning a handler's Lua error into a logged 500 that
-- tells the client nothing internal.
local router_mod = require "chorus.api.router"
local errors = require "chorus.api.errors"
local json = require "chorus.json"
local log = require "chorus.log"

local M = {}

local App = {}
App.__index = App

-- new(service) -> app. service: {engine, store, runner, front, auth,
-- metrics, hub, ready = function() -> ok, checks}
function M.new(service)
  -- The front door the execute routes (REST and WebSocket) go through;
  -- made from the engine, store and runner when the caller has none.
  service.front = service.front or require("chorus.run.service").new(service)
  local app = setmetatable({ service = service, router = router_mod.new() }, App)
  for _, name in ipairs({ "health", "configs", "executions", "registry", "stats", "session", "graph", "openapi", "admin" }) do
    require("chorus.api." .. name .. "_routes").register(app)
  end
  require("chorus.api.ws").register(app)
  return app
end

-- route(method, pattern, opts, fn): opts.auth = action needed ("read",
-- "write", "execute", "control", "admin") or false for public routes;
-- opts.websocket: a WebSocket endpoint (its key may also come as
-- ?api_key= or ?token=, browsers cannot set headers on one). fn(ctx) -> status,
-- headers, body (nothing once it served an upgraded socket); ctx = {req,
-- params, query, principal, service}.
function App:route(method, pattern, opts, fn)
  self.router:add(method, pattern, { auth = opts.auth, websocket = opts.websocket, fn = fn })
end

-- fallback(fn): fn(req) -> status, headers, body | nil, asked for a path
-- no route matches (the admin page's files) before the JSON 404.
function App:fallback(fn)
  self.fallback_fn = fn
end

local auth_mod = require "chorus.api.auth"

-- handle(req) -> status, headers, body. It also leaves on req what the
-- access log and the metrics need: req.route (the matched pattern, e.g.
-- "/api/v1/orchestrations/status/{trace_id}"; nil when none matched),
-- req.principal (once authenticated) and req.trace_id (the route's
-- {trace_id}, or the execution a submit started).
function App:handle(req)
  -- third: the pattern matched, or the methods allowed (405)
  local route, params, third = self.router:match(req.method, req.path)
  if not route then
    if params == "method_not_allowed" then
      return errors.response("method_not_allowed", ("%s is not allowed here (allowed: %s)"):format(req.method, third),
        nil, { allow = third })
    end
    if self.fallback_fn then
      local s, h, b = self.fallback_fn(req)
      if s then return s, h, b end
    end
    return errors.response("not_found", ("no route for %s %s"):format(req.method, req.path))
  end
  req.route, req.trace_id = third, params.trace_id
  local query, qerr = router_mod.parse_query(req.query)
  if not query then return errors.response("bad_request", qerr) end
  for name, v in pairs(params) do
    if not router_mod.text(v) then
      return errors.response("bad_request", ("path parameter %s is not UTF-8 text (a NUL or a malformed byte)"):format(name),
        { { path = name, message = "must be UTF-8 text without NUL" } })
    end
  end
  local principal
  if route.auth then
    local header = req.headers["authorization"]
    -- A WebSocket's key may come as ?api_key= or ?token= (the plan's name).
    local qkey = route.websocket and (query.api_key or query.token)
    if not header and qkey then header = "Bearer " .. qkey end
    local p, code, msg = self.service.auth:authenticate(header)
    if not p then
      return errors.response(code, msg, nil, code == "unauthorized" and { ["www-authenticate"] = "Bearer" } or nil)
    end
    if not auth_mod.can(p, route.auth) then
      return errors.response("forbidden", ("the %s role cannot %s"):format(p.role, route.auth))
    end
    principal = p
    req.principal = p
  end
  local ctx = { req = req, params = params, query = query, principal = principal, service = self.service }
  local ok, status, headers, body = xpcall(route.fn, debug.traceback, ctx)
  if not ok then
    log.error_with({ route = req.route, trace_id = req.trace_id }, "api: %s %s failed: %s", req.method, req.path,
      tostring(status))
    return errors.response("internal", "internal error (logged on the server)")
  end
  return status, headers, body
end

-- Helpers for route files.

local JSON = errors.JSON_HEADERS

-- ok(status, value [, headers]) -> a JSON response
function M.json(status, value, headers)
  local body, err = json.encode(value)
  if not body then
    -- A record stored before today's limits: answer what can be, and say
    -- which part could not (json.encode_lenient), never a 500.
    log.warn("api: a response had a part that cannot be encoded: %s", tostring(err))
    body = json.encode_lenient(value)
  end
  if headers then
    local h = { ["content-type"] = "application/json" }
    for k, v in pairs(headers) do h[k] = v end
    return status, h, body
  end
  return status, JSON, body
end

-- int_param(query, name, default, min, max) -> n | nil, error response...
function M.int_param(query, name, default, min, max)
  local s = query[name]
  if s == nil or s == "" then return default end
  local n = tonumber(s)
  if not n or n ~= math.floor(n) or not s:match("^%-?%d+$") then
    return nil, errors.response("bad_request", ("query parameter %s must be an integer, got %q"):format(name, s),
      { { path = "query." .. name, message = "must be an integer" } })
  end
  if n < min or n > max then
    return nil, errors.response("bad_request", ("query parameter %s must be between %d and %d, got %s"):format(name, min, max, s),
      { { path = "query." .. name, message = ("must be between %d and %d"):format(min, max) } })
  end
  return n
end

-- days_from_civil(y, m, d) -> days since 1970-01-01 (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- parse_time(s) -> epoch seconds | nil: seconds since the epoch, or an
-- RFC 3339 date-time ("2026-01-02T03:04:05.5Z", "...+02:00").
function M.parse_time(s)
  if s:match("^%-?%d+%.?%d*$") then return tonumber(s) end
  local y, mo, d, hh, mi, ss, frac, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then return nil end
  y, mo, d, hh, mi, ss = tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mi), tonumber(ss)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or hh > 23 or mi > 59 or ss > 60 then return nil end
  if frac == "." then return nil end
  local offset
  if rest == "Z" or rest == "z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60 * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
  return t + (frac ~= "" and tonumber("0" .. frac) or 0)
end

-- time_param(query, name) -> epoch seconds | nil (absent) | nil, error response...
function M.time_param(query, name)
  local s = query[name]
  if s == nil or s == "" then return nil end
  local t = M.parse_time(s)
  if not t then
    return nil, errors.response("bad_request",
      ("query parameter %s must be an RFC 3339 date-time or seconds since the epoch, got %q"):format(name, s),
      { { path = "query." .. name, message = "must be an RFC 3339 date-time (2026-01-02T03:04:05Z) or epoch seconds" } })
  end
  return t
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
function M.is_uuid(s) return type(s) == "string" and s:match(UUID) ~= nil end

-- scope(principal) -> what a store read may see
function M.scope(p)
  if not p or p.admin then return { admin = true, tenant_id = p and p.tenant_id } end
  return { tenant_id = p.tenant_id, user_id = p.user_id }
end

return M
