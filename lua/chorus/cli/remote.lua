-- chorus.cli.remote: the CLI's client of a running server's REST API.
--
--   local r = remote.new({base = "http://127.0.0.1:8080", key = "chk_..."})
--   r:call(method, path, {query = {k = v}, body = table})
--     -> value, status | nil, err, code
--   r:open_events(path, {headers}) -> stream | nil, err, code (server-sent events)
--
-- Errors are one sentence a person can act on:
--   code "unreachable"  the server cannot be reached ("cannot reach the
--                       server at URL: connection refused")
--   code "timeout"      it did not answer in time
--   code = the API's error code ("unauthorized", "not_found", ...) with its
--                       message and HTTP status, and a hint on a 401
--   code "bad_answer"   the answer is not the Chorus API's (a proxy's page)
-- The key is sent as a bearer header and appears in no message.
local client = require "chorus.http.client"
local json = require "chorus.json"

local M = {}

M.DEFAULT_SERVER = "http://127.0.0.1:8080"

local Remote = {}
Remote.__index = Remote

-- normalize(url) -> base URL without a trailing slash | nil, err. A bare
-- HOST:PORT means http://HOST:PORT.
function M.normalize(url)
  if type(url) ~= "string" or url == "" then return nil, "the server URL is empty" end
  if not url:match("^[%a][%w+.%-]*://") then url = "http://" .. url end
  url = url:gsub("/+$", "")
  local ok, err = client.check_url(url)
  if not ok then return nil, ("%s is not a server URL (%s)"):format(url, err) end
  return url
end

-- new({base, key, timeout_ms}) -> remote (base already normalized)
function M.new(opts)
  return setmetatable({ base = opts.base, key = opts.key, timeout_ms = opts.timeout_ms or 30000 }, Remote)
end

-- escape(s) -> s percent-encoded for a path segment or a query value
function M.escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function query_string(q)
  if not q then return "" end
  local keys = {}
  for k, v in pairs(q) do
    if v ~= nil then keys[#keys + 1] = k end
  end
  if #keys == 0 then return "" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = M.escape(k) .. "=" .. M.escape(q[k]) end
  return "?" .. table.concat(parts, "&")
end

function Remote:headers(extra)
  local h = { accept = "application/json" }
  if self.key then h.authorization = "Bearer " .. self.key end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- transport_error(err, kind) -> message, code
function Remote:transport_error(err, kind)
  if kind == "timeout" then
    return ("the server at %s did not answer within %d s"):format(self.base, math.floor(self.timeout_ms / 1000)),
      "timeout"
  end
  -- curl's text after the kind ("connection refused: Failed to connect to
  -- 127.0.0.1 port 1 after 0 ms: Couldn't connect to server") says the
  -- same twice: the kind is enough, with the URL.
  return ("cannot reach the server at %s: %s"):format(self.base, kind or tostring(err)), "unreachable"
end

-- api_error(status, body, ctype) -> message, code: the API's own words.
function Remote:api_error(status, body, ctype)
  local doc = client.is_json(ctype) and json.decode(body or "")
  local e = type(doc) == "table" and type(doc.error) == "table" and doc.error
  if not e then
    return ("the server at %s answered HTTP %d (%s), not the Chorus API's answer"):format(self.base, status,
      ctype or "no content type"), "bad_answer"
  end
  local msg = ("%s (HTTP %d)"):format(tostring(e.message or e.code), status)
  if type(e.details) == "table" then
    for _, d in ipairs(e.details) do
      if type(d) == "table" and d.message then
        msg = msg .. ("\n  %s: %s"):format(tostring(d.path or ""), tostring(d.message))
      end
    end
  end
  if status == 401 then
    msg = msg .. (self.key and "\n  CHORUS_API_KEY is not a valid key of this server"
      or "\n  set CHORUS_API_KEY to an API key of this server")
  end
  return msg, e.code or ("http_" .. status)
end

-- call(method, path, {query, body}) -> value, status | nil, err, code
function Remote:call(method, path, opts)
  opts = opts or {}
  local body, headers
  if opts.body ~= nil then
    local err
    body, err = json.encode(opts.body)
    if not body then return nil, "cannot encode the request: " .. tostring(err), "bad_request" end
    headers = self:headers({ ["content-type"] = "application/json" })
  else
    headers = self:headers()
  end
  local res, err, kind = client.request({ method = method, url = self.base .. path .. query_string(opts.query),
    headers = headers, body = body, timeout_ms = self.timeout_ms, connect_timeout_ms = 5000 })
  if not res then return nil, self:transport_error(err, kind) end
  local ctype = res.headers["content-type"]
  if res.status >= 400 then return nil, self:api_error(res.status, res.body, ctype) end
  if res.status == 204 or res.body == "" then return true, res.status end
  local v = client.is_json(ctype) and json.decode(res.body)
  if v == nil then
    return nil, ("the server at %s answered HTTP %d (%s), not the Chorus API's answer"):format(self.base,
      res.status, ctype or "no content type"), "bad_answer"
  end
  return v, res.status
end

-- open_events(path, headers) -> stream | nil, err, code: a server-sent
-- events stream (no overall timeout: it lasts as long as it is followed).
function Remote:open_events(path, extra)
  local h = self:headers({ accept = "text/event-stream" })
  for k, v in pairs(extra or {}) do h[k] = v end
  local s, err, kind = client.open({ url = self.base .. path, headers = h, timeout_ms = 0, connect_timeout_ms = 5000,
    max_body_bytes = 1e14 })
  if not s then return nil, self:transport_error(err, kind) end
  if s.status >= 400 then
    local parts = {}
    while true do
      local chunk = s:read()
      if not chunk then break end
      parts[#parts + 1] = chunk
    end
    s:close()
    return nil, self:api_error(s.status, table.concat(parts), s.headers["content-type"])
  end
  local ctype = s.headers["content-type"] or ""
  if not ctype:lower():find("text/event-stream", 1, true) then
    s:close()
    return nil, ("the server at %s answered HTTP %d (%s), not an event stream: is it a Chorus server of this version?")
      :format(self.base, s.status, ctype ~= "" and ctype or "no content type"), "bad_answer"
  end
  return s
end

return M
