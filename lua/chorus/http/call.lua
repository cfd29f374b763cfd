-- chorus.http.call: one HTTP request described by a step's params, for the
-- http agent (agents/http.lua): method, URL, query, headers and body from
-- templates over the step input, header values naming environment
-- variables (${CRM_TOKEN}), expected statuses, a JSON path to extract,
-- a response size limit, and failures in the agent contract's terms.
--
--   call(input, ctx, params) -> output, meta | nil, message, info
--   check(step, steps_by_id) -> validation errors {path, message}
--
-- Placeholders in the URL's path and query are percent-encoded (a value
-- "PAY ROLL/1" becomes PAY%20ROLL%2F1); those before the path (scheme and
-- host, e.g. "{{base_url}}/jobs") go in as they are. Values taken from the
-- environment are secrets: they are never put in a message, and a
-- response that echoes one has it replaced with [redacted].
local client = require "chorus.http.client"
local json = require "chorus.json"
local template = require "chorus.template"
local failure = require "chorus.http.failure"
local log = require "chorus.log"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local find, sub, gsub, format, lower, upper = string.find, string.sub, string.gsub, string.format, string.lower, string.upper
local getenv = os.getenv
local NO_RETRY = failure.NO_RETRY

local M = {}

M.DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
M.CONNECT_TIMEOUT_MS = 10000

local PLACEHOLDER = "{{%s*(.-)%s*}}"
local ENV_REF = "%${([^}]*)}"
local ENV_NAME = "^[%a_][%w_]*$"

local function encode_component(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then
    if v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then return format("%d", v) end
    return tostring(v)
  end
  if type(v) == "boolean" then return tostring(v) end
  return json.encode(v) or tostring(v)
end

-- Where a URL template's path starts: after scheme://host, else at its
-- first "/" (a template starting with {{base_url}}).
local function path_start(url)
  local _, e = find(url, "://", 1, true)
  local s = find(url, "/", e and e + 1 or 1, true)
  return s or #url + 1
end

-- render_url(url, input) -> url | nil, err
function M.render_url(url, input)
  local at = path_start(url)
  local head, err = template.render(sub(url, 1, at - 1), input, "params.url")
  if not head then return nil, err end
  local missing
  local tail = gsub(sub(url, at), PLACEHOLDER, function(path)
    if missing then return "" end
    local v, lerr = template.lookup(input, path)
    if v == nil then
      missing = lerr
      return ""
    end
    return encode_component(text_of(v))
  end)
  if missing then return nil, "template params.url: " .. missing end
  return head .. tail
end

-- render_headers(headers, input, secrets) -> headers (names in lower
-- case) | nil, err: ${VAR} from the environment (each value appended to
-- secrets), then {{placeholders}}. Shared with the llm agent.
function M.render_headers(headers, input, secrets)
  local out = {}
  for name, value in pairs(headers or {}) do
    local what = "params.headers." .. name
    local unset
    local v = gsub(value, ENV_REF, function(var)
      local s = getenv(var)
      if s == nil or s == "" then
        unset = unset or var
        return ""
      end
      secrets[#secrets + 1] = s
      return s
    end)
    if unset then
      return nil, format("%s names ${%s}, which is not set in the environment", what, unset)
    end
    local r, err = template.render(v, input, what)
    if not r then return nil, err end
    out[lower(name)] = r
  end
  return out
end

local function render_query(params, input, url)
  local q = params.query
  if type(q) ~= "table" or next(q) == nil then return url end
  local names = {}
  for k in pairs(q) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v, err = template.render_value(q[k], input, "params.query." .. k)
    if v == nil then return nil, err end
    parts[#parts + 1] = encode_component(k) .. "=" .. encode_component(text_of(v))
  end
  return url .. (find(url, "?", 1, true) and "&" or "?") .. table.concat(parts, "&")
end

-- is_expected(status, expected) for entries 204 or "2xx".
function M.is_expected(status, expected)
  if expected == nil then return status >= 200 and status <= 299 end
  for _, e in ipairs(expected) do
    if type(e) == "number" then
      if e == status then return true end
    elseif type(e) == "string" then
      local d = tonumber(sub(e, 1, 1))
      if d and math.floor(status / 100) == d then return true end
    end
  end
  return false
end

local function describe_expected(expected)
  if expected == nil then return "2xx" end
  local t = {}
  for i, e in ipairs(expected) do t[i] = tostring(e) end
  return table.concat(t, ", ")
end

-- failed(ctx, tp, msg, info) -> nil, msg, info: a failed attempt logged
-- with its trace ids (timeouts and cancels are the step's to tell); the
-- llm agent's requests end the same way.
local function failed(ctx, tp, msg, info)
  if msg ~= "timeout" and msg ~= "cancelled" then
    log.warn_with({ trace_id = ctx.trace_id, execution_id = ctx.execution_id, step_id = ctx.step_id,
      attempt = ctx.attempt, traceparent = tp }, "%s (step %s attempt %d, trace %s, traceparent %s)", msg,
      tostring(ctx.step_id), ctx.attempt or 0, tostring(ctx.trace_id), tp)
  end
  return nil, msg, info
end
M.failed = failed

function M.call(input, ctx, params)
  local secrets = {}
  local url, err = M.render_url(params.url, input)
  if not url then return nil, "http: " .. err, NO_RETRY end
  url, err = render_query(params, input, url)
  if not url then return nil, "http: " .. err, NO_RETRY end
  local headers
  headers, err = M.render_headers(params.headers, input, secrets)
  if not headers then return nil, "http: " .. err, NO_RETRY end
  local body = params.body
  if body ~= nil then
    if type(body) == "table" then
      body, err = template.render_value(body, input, "params.body")
      if body == nil then return nil, "http: " .. err, NO_RETRY end
      body = json.encode(body)
      if headers["content-type"] == nil then headers["content-type"] = "application/json" end
    else
      body, err = template.render(tostring(body), input, "params.body")
      if not body then return nil, "http: " .. err, NO_RETRY end
    end
  end
  local method = upper(params.method or (body ~= nil and "POST" or "GET"))
  local tp = ctx:traceparent()
  if headers.traceparent == nil then headers.traceparent = tp end
  if headers.accept == nil and params.response ~= "text" then headers.accept = "application/json, */*;q=0.5" end
  local where = "http: " .. method .. " " .. failure.safe_url(url)
  local limit = params.max_response_bytes or M.DEFAULT_MAX_RESPONSE_BYTES
  local res, kind
  res, err, kind = client.request({ method = method, url = url, headers = headers, body = body,
    timeout_ms = params.request_timeout_ms or 0, connect_timeout_ms = M.CONNECT_TIMEOUT_MS,
    max_body_bytes = limit, follow_redirects = params.follow_redirects == true })
  if not res then
    local msg, info = failure.transport(where, err, kind)
    if kind == "too large" then
      msg = format("%s: the response is larger than max_response_bytes (%d): %s", where, limit, err)
    end
    return failed(ctx, tp, failure.redact(msg, secrets), info)
  end
  local status = res.status
  if not M.is_expected(status, params.expected) then
    local msg, info = failure.status(where, res)
    msg = msg:gsub("^(.-HTTP %d+)", "%1 (expected " .. describe_expected(params.expected) .. ")", 1)
    return failed(ctx, tp, failure.redact(msg, secrets), info)
  end
  local ctype = res.headers["content-type"]
  local value = res.body
  local as_json = params.response == "json" or (params.response ~= "text" and client.is_json(ctype))
  if as_json or params.extract then
    local decoded, derr = json.decode(res.body)
    if decoded == nil then
      if as_json or params.extract then
        return failed(ctx, tp, failure.redact(format("%s: HTTP %d: the response is not JSON (%s): %s", where,
          status, tostring(derr), failure.snippet(res.body, 200)), secrets), NO_RETRY)
      end
    else
      value = decoded
    end
  end
  -- A service that echoes a secret must not put it in a record.
  if #secrets > 0 then value = failure.redact_value(value, secrets) end
  local meta = { status = status, bytes = #res.body }
  if params.extract then
    local v, lerr = template.lookup(value, params.extract)
    if v == nil then
      return failed(ctx, tp, format("%s: extract %q: %s", where, params.extract,
        (gsub(lerr, "in the step input", "in the response"))), NO_RETRY)
    end
    return v, meta
  end
  return { status = status, content_type = ctype, body = value }, meta
end

-- check_headers(step, steps_by_id) -> errors of params.headers: names,
-- ${VAR} names, placeholders. Shared with the llm agent.
function M.check_headers(step, steps_by_id)
  local errors = {}
  for name, value in pairs(step.params and step.params.headers or {}) do
    local where = "params.headers." .. name
    if not find(name, "^[%w!#$%%&'*+%.^_`|~%-]+$") then
      errors[#errors + 1] = { path = where, message = "not a valid header name" }
    end
    for var in value:gmatch(ENV_REF) do
      if not find(var, ENV_NAME) then
        errors[#errors + 1] = { path = where, message = format("${%s} is not an environment variable name", var) }
      end
    end
    for _, e in ipairs(template.check_paths(step, steps_by_id, template.placeholders(value), where)) do
      errors[#errors + 1] = e
    end
  end
  return errors
end

-- check(step, steps_by_id) -> errors (validation, with paths in the step)
function M.check(step, steps_by_id)
  local errors = {}
  local p = step.params or {}
  local function add(list)
    for _, e in ipairs(list) do errors[#errors + 1] = e end
  end
  if type(p.url) == "string" then
    add(template.check_paths(step, steps_by_id, template.placeholders(p.url), "params.url"))
    if not find(p.url, "{{", 1, true) then
      local ok, err = client.check_url(p.url)
      if not ok then errors[#errors + 1] = { path = "params.url", message = err } end
    end
  end
  for _, f in ipairs({ "query", "body" }) do
    if p[f] ~= nil then add(template.check_paths(step, steps_by_id, template.placeholders(p[f]), "params." .. f)) end
  end
  add(M.check_headers(step, steps_by_id))
  if p.extract ~= nil then
    local ok, err = template.parse_path(p.extract)
    if not ok then errors[#errors + 1] = { path = "params.extract", message = err } end
  end
  return errors
end

return M
