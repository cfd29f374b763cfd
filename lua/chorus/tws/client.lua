-- chorus.tws.client: the REST API of an HCL Workload Automation / IBM
-- Workload Scheduler distributed engine ("twsd") over chorus.http.client:
-- the connection from the environment, Basic auth, the current plan's job
-- query, a job, its job log and the job actions, and what a failure means
-- for the step (retry or not). docs/agents.md ("tws") lists the API's
-- sources.
--
--   connect(params, opts) -> conn | nil, err, info
--     params: the tws step's params (url, url_env, user_env, password_env,
--     ca_file, ca_file_env, base_path, plan, timeout_ms, max_response_bytes)
--     opts: getenv (default os.getenv), traceparent (header value), and
--     step_id, attempt, trace_id for log lines
--   conn:query_jobs({job, job_stream, workstation, last}, how_many)
--        -> {job_json...} | nil, err, info
--   conn:get_job(id) -> job_json | nil, err, info
--   conn:job_log(id) -> text | nil, err, info
--   conn:action(id, name) -> true | nil, err, info
--   conn.engine: the engine's URL (never with credentials), for messages
--
-- info on failure: {retry = false} when retrying cannot help (401, 403,
-- 404, other 4xx, TLS, bad settings), {retry_after_ms = n} for 429 and
-- 5xx (from Retry-After, chorus.http.failure; else the step's backoff
-- applies). The password never appears in a message: it is read here, put
-- in one header, and replaced by [redacted] in any text that comes back.
local http = require "chorus.http.client"
local json = require "chorus.json"
local base64 = require "chorus.base64"
local log = require "chorus.log"
local failure = require "chorus.http.failure"

local type, tostring, pairs, ipairs, next = type, tostring, pairs, ipairs, next
local format, concat = string.format, table.concat

local M = {}

M.defaults = {
  base_path = "/twsd",
  plan = "current",
  timeout_ms = 30000,
  max_response_bytes = 4 * 1024 * 1024,
}

local NO_RETRY = { retry = false }

-- Percent-encodes a path segment (a plan job id holds ';' and '#').
local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end
M.escape = escape

local Conn = {}
Conn.__index = Conn

-- Hides the password (and the Basic credentials) in text from elsewhere.
function Conn:scrub(text)
  return failure.redact(tostring(text), self._secrets)
end

-- What the engine said in an error body: {"messages": [...]} (the
-- product's error shape), else a message field, else the body's start.
function Conn:engine_says(res)
  local body = res.body or ""
  local doc = http.is_json(res.headers["content-type"]) and json.decode(body) or nil
  local parts = {}
  if type(doc) == "table" then
    if type(doc.messages) == "table" then
      for _, m in ipairs(doc.messages) do
        parts[#parts + 1] = type(m) == "table" and tostring(m.message or m.text or json.encode(m)) or tostring(m)
      end
    elseif type(doc.message) == "string" then
      parts[1] = doc.message
    end
  end
  local text = #parts > 0 and concat(parts, "; ") or body:gsub("%s+", " "):sub(1, 200)
  if text == "" then text = "no details" end
  return self:scrub(text)
end

-- connect(params, opts) -> conn | nil, err, info
function M.connect(params, opts)
  params, opts = params or {}, opts or {}
  local getenv = opts.getenv or os.getenv
  local url_env = params.url_env or "TWS_URL"
  local url = params.url or getenv(url_env)
  if url == nil or url == "" then
    return nil, format("no engine URL: set %s (or params.url), e.g. https://engine:31116", url_env), NO_RETRY
  end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme or (scheme:lower() ~= "http" and scheme:lower() ~= "https") then
    return nil, format("the engine URL from %s must start with https:// or http://",
      params.url and "params.url" or url_env), NO_RETRY
  end
  if (rest:match("^([^/]*)") or ""):find("@", 1, true) then
    -- Never echo it: it may hold a password.
    return nil, format("the engine URL from %s must not hold credentials: set %s and %s",
      params.url and "params.url" or url_env, params.user_env or "TWS_USER", params.password_env or "TWS_PASSWORD"), NO_RETRY
  end
  local user_env, password_env = params.user_env or "TWS_USER", params.password_env or "TWS_PASSWORD"
  local user, password = getenv(user_env), getenv(password_env)
  if user == nil or user == "" then return nil, format("no user: set %s", user_env), NO_RETRY end
  if password == nil or password == "" then return nil, format("no password: set %s", password_env), NO_RETRY end
  local ca_env = params.ca_file_env or "TWS_CA_FILE"
  local ca_file = params.ca_file or getenv(ca_env)
  if ca_file == "" then ca_file = nil end
  if ca_file then
    local f, ferr = io.open(ca_file, "rb")
    if not f then
      return nil, format("the CA file from %s cannot be read: %s",
        params.ca_file and "params.ca_file" or ca_env, tostring(ferr)), NO_RETRY
    end
    f:close()
  end
  url = url:gsub("/+$", "")
  local base_path = (params.base_path or M.defaults.base_path):gsub("/+$", "")
  local root = url
  if base_path ~= "" and url:sub(-#base_path) ~= base_path then root = url .. base_path end
  local basic = base64.encode(user .. ":" .. password)
  local secrets = { basic, password } -- failure.redact skips secrets under 4 bytes
  return setmetatable({
    engine = url, user = user, root = root,
    plan_path = root .. "/plan/" .. escape(params.plan or M.defaults.plan),
    ca_file = ca_file, ca_source = params.ca_file and "params.ca_file" or ca_env,
    timeout_ms = params.timeout_ms or M.defaults.timeout_ms,
    max_bytes = params.max_response_bytes or M.defaults.max_response_bytes,
    traceparent = opts.traceparent,
    _where = ("step %s attempt %s, trace %s, traceparent %s"):format(tostring(opts.step_id), tostring(opts.attempt),
      tostring(opts.trace_id), tostring(opts.traceparent)),
    _auth = "Basic " .. basic,
    _secrets = secrets,
    _user_env = user_env, _password_env = password_env,
  }, Conn)
end

-- What a failed transfer means for the step.
function Conn:transport_error(method, what, err, kind)
  if kind == "cancelled" then return nil, "cancelled" end
  if kind == "timeout" then
    return nil, format("%s %s: no answer from the engine at %s within %d ms", method, what, self.engine, self.timeout_ms)
  end
  local msg = self:scrub(err)
  if kind == "tls error" then
    return nil, format("%s %s: TLS failure talking to %s (%s; a self-signed engine needs its CA in %s): %s",
      method, what, self.engine, self.ca_file and "with the CA file from " .. self.ca_source or "with the system's CAs",
      self.ca_source, msg), NO_RETRY
  end
  if kind == "too large" then
    return nil, format("%s %s: the engine's answer is larger than %d bytes (params.max_response_bytes)",
      method, what, self.max_bytes), NO_RETRY
  end
  if kind == "bad url" or kind == "invalid request" or kind == "unsupported protocol" then
    return nil, format("%s %s: %s", method, what, msg), NO_RETRY
  end
  -- refused, unreachable, reset: the engine may come back; the step's
  -- retry policy decides.
  return nil, format("%s %s: cannot reach the engine at %s: %s", method, what, self.engine, msg)
end

-- What an HTTP error status means for the step. `what` names the object
-- for a 404 (e.g. "job PAYROLL_DAILY").
function Conn:status_error(method, what, res, subject)
  local s = res.status
  local says = self:engine_says(res)
  if s == 401 then
    return nil, format("%s %s: HTTP 401: the engine at %s refused the credentials of user '%s' (%s / %s): %s",
      method, what, self.engine, self.user, self._user_env, self._password_env, says), NO_RETRY
  elseif s == 403 then
    return nil, format("%s %s: HTTP 403: user '%s' is not allowed to do this on %s: %s",
      method, what, self.user, self.engine, says), NO_RETRY
  elseif s == 404 then
    return nil, format("%s %s: HTTP 404: %s not found on %s: %s", method, what, subject or "resource",
      self.engine, says), NO_RETRY
  elseif s == 429 or s >= 500 then
    local after = failure.retry_after_ms(res.headers)
    return nil, format("%s %s: HTTP %d from the engine at %s: %s", method, what, s, self.engine, says),
      { retry_after_ms = after }
  end
  return nil, format("%s %s: HTTP %d: %s", method, what, s, says), NO_RETRY
end

-- request(method, url, what, body, extra) -> res | nil, err, info
-- extra: more headers (How-Many, Accept).
function Conn:request(method, url, what, body, extra)
  local headers = {
    authorization = self._auth,
    accept = "application/json",
    traceparent = self.traceparent,
  }
  if body ~= nil then headers["content-type"] = "application/json" end
  if extra then for k, v in pairs(extra) do headers[k] = v end end
  local res, err, kind = http.request({
    method = method, url = url, headers = headers, body = body,
    timeout_ms = self.timeout_ms, max_body_bytes = self.max_bytes, ca_file = self.ca_file,
  })
  if not res then
    log.debug("tws: %s %s failed: %s (%s)", method, what, self:scrub(err), self._where)
    return self:transport_error(method, what, err, kind)
  end
  log.debug("tws: %s %s -> %d (%s)", method, what, res.status, self._where)
  return res
end

-- Decodes a JSON answer or says what came instead.
function Conn:json_of(res, method, what)
  local doc, err = json.decode(res.body)
  if doc == nil then
    return nil, format("%s %s: the engine answered HTTP %d with a body that is not JSON (%s): %s",
      method, what, res.status, tostring(err), self:scrub(res.body:gsub("%s+", " "):sub(1, 200))), NO_RETRY
  end
  return doc
end

-- query_jobs(filter, how_many) -> list of job objects
function Conn:query_jobs(filter, how_many)
  local f = { jobName = filter.job, jobStreamName = filter.job_stream, workstationName = filter.workstation }
  if filter.last ~= false then f.lastInRerunChain = true end
  local what = "plan/job/query"
  local body = assert(json.encode({ filters = { jobInPlanFilter = f } }))
  local url = self.plan_path .. "/job/query"
  local res, err, info = self:request("POST", url, what, body, { ["how-many"] = tostring(how_many or 50) })
  if not res then return nil, err, info end
  if res.status ~= 200 then return self:status_error("POST", what, res, "the plan") end
  local doc
  doc, err, info = self:json_of(res, "POST", what)
  if doc == nil then return nil, err, info end
  if type(doc) ~= "table" or (next(doc) ~= nil and not json.is_array(doc)) then
    return nil, format("POST %s: expected a JSON array of jobs, got %s", what, type(doc)), NO_RETRY
  end
  return doc
end

function Conn:get_job(id, label)
  local what = "plan/job/" .. id
  local res, err, info = self:request("GET", self.plan_path .. "/job/" .. escape(id), what)
  if not res then return nil, err, info end
  if res.status ~= 200 then return self:status_error("GET", what, res, label or ("job " .. id)) end
  local doc
  doc, err, info = self:json_of(res, "GET", what)
  if type(doc) ~= "table" then return nil, err or ("GET " .. what .. ": expected a JSON object"), info or NO_RETRY end
  return doc
end

-- job_log(id) -> text: the stdlist, from {"log": "..."} or text/plain.
function Conn:job_log(id, label)
  local what = "plan/job/" .. id .. "/joblog"
  local res, err, info = self:request("GET", self.plan_path .. "/job/" .. escape(id) .. "/joblog", what,
    nil, { accept = "application/json, text/plain;q=0.9" })
  if not res then return nil, err, info end
  if res.status ~= 200 then return self:status_error("GET", what, res, label or ("job " .. id)) end
  if http.is_json(res.headers["content-type"]) then
    local doc
    doc, err, info = self:json_of(res, "GET", what)
    if doc == nil then return nil, err, info end
    if type(doc) == "table" and type(doc.log) == "string" then return doc.log end
    if type(doc) == "string" then return doc end
    return nil, format("GET %s: expected {\"log\": text}, got %s", what,
      self:scrub((json.encode(doc) or "?"):sub(1, 200))), NO_RETRY
  end
  return res.body
end

-- action(id, name) -> true: PUT .../action/{name} with an empty object
-- (as the product's samples send it).
function Conn:action(id, name, label)
  local what = "plan/job/" .. id .. "/action/" .. name
  local res, err, info = self:request("PUT", self.plan_path .. "/job/" .. escape(id) .. "/action/" .. name, what, "{}")
  if not res then return nil, err, info end
  if res.status < 200 or res.status > 299 then return self:status_error("PUT", what, res, label or ("job " .. id)) end
  return true
end

M.Conn = Conn
return M
