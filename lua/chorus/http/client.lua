-- chorus.http.client: outbound HTTP requests from tasks (libcurl on the loop).
--
--   request({method=, url=, headers={name=value}, body=, timeout_ms=,
--            connect_timeout_ms=, max_body_bytes=, follow_redirects=,
--            max_redirects=, deny_internal=, allow=, ca_file=}) -> res | nil, err, kind
--   ca_file: a PEM file of CAs to trust for https instead of the system's
--   (an engine with a self-signed certificate); verification stays on
--   get(url, opts)              -> res | nil, err, kind
--   post_json(url, value, opts) -> res (+ res.json) | nil, err, kind
--   open(opts)                  -> stream | nil, err, kind
--
-- res = {status = 200, headers = {["content-type"] = "..."}, body = "..."}.
-- Every HTTP status (404, 500, ...) is a response, not an error. Header names
-- are lower-case; repeated headers are joined with ", ".
--
-- Errors: err is a message, kind the short word it starts with:
--   "timeout"        timeout_ms (or connect_timeout_ms) passed, or the task's
--                    deadline; err is exactly "timeout"
--   "cancelled"      the waiting task was cancelled; err is exactly that
--   "connection refused", "connect failed", "cannot resolve", "tls error",
--   "empty reply", "connection error", "too many redirects",
--   "too large"      the body exceeded max_body_bytes (or headers 256 KiB)
--   "blocked address" with deny_internal = true, the host resolved to an
--                    internal address (loopback, private, link-local...)
--                    that allow = {"10.0.0.0/8", "127.0.0.1"} does not list
--   "bad url"        not an http(s) URL; "invalid request" bad options;
--   "unsupported protocol", "out of memory", "request failed"
-- e.g. nil, "connection refused: Failed to connect to 127.0.0.1 port 1 ...",
-- "connection refused". Calling outside a chorus task raises (a bug).
--
-- Cancelling the task that waits aborts the transfer at once (the
-- connection is closed); connections of finished requests are pooled and
-- reused. Redirects are not followed unless follow_redirects = true.
--
-- Streamed responses: open(opts) takes the options of request() plus
-- buffer_bytes [256 KiB], and returns as soon as the status and headers
-- are in: stream.status, stream.headers (as res.headers). Then
--   stream:read() -> chunk          the next bytes of the body, as they come
--                 | nil             the body is complete
--                 | nil, err, kind  the transfer failed (kinds as above;
--                                   "closed" after stream:close())
--   stream:read_sse() -> lines      for a text/event-stream body: its
--                                   complete lines, split as they come
--                                   (see Stream:read_sse below)
--   stream:close()                  aborts the transfer if it still runs
-- read() yields until bytes or the end arrive. When more than buffer_bytes
-- arrived and were not read, the transfer is paused (TCP holds the server
-- back) until the reader catches up; max_body_bytes bounds the whole body.
-- A task cancelled or past its deadline while it waits in open or read
-- aborts the transfer there and then (the connection is closed). Close a
-- stream you stop reading (collecting it closes it too).
local native = require "chorus.native"
local json = require "chorus.json"

local curl_request = native.curl_request
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local lower, upper, find = string.lower, string.upper, string.find

local M = {}

-- Defaults for options left out; 0 means "no limit" for the timeouts.
M.defaults = {
  timeout_ms = 60000,          -- the whole request (LLM calls can be slow)
  connect_timeout_ms = 10000,  -- curl's own default is 300 s
  max_body_bytes = 16 * 1024 * 1024,
  max_redirects = 5,
}

local function invalid(why)
  return nil, "invalid request: " .. why, "invalid request"
end

local function bad_url(why)
  return nil, "bad url: " .. why, "bad url"
end

-- URLs and header names found good lately: an agent sends the same ones
-- on every call, and the patterns cost more than the rest of the
-- options together. Cleared when full; a long one is checked each time
-- (at most GOOD_MAX x GOOD_LEN bytes are kept).
local GOOD_MAX, GOOD_LEN = 4096, 512
local good_urls, good_names, n_urls, n_names = {}, {}, 0, 0

local function remember_url(url)
  if #url > GOOD_LEN then return end
  if n_urls >= GOOD_MAX then good_urls, n_urls = {}, 0 end
  good_urls[url], n_urls = true, n_urls + 1
end

-- A header name or a method (both HTTP tokens).
local function remember_name(name)
  if #name > GOOD_LEN then return end
  if n_names >= GOOD_MAX then good_names, n_names = {}, 0 end
  good_names[name], n_names = true, n_names + 1
end

-- check_url(url) -> true | nil, err, kind
local function check_url(url)
  if good_urls[url] then return true end
  if type(url) ~= "string" then return bad_url("expected a string, got " .. type(url)) end
  local scheme, rest = url:match("^([%a][%w+.%-]*)://(.*)$")
  if not scheme then return bad_url("no scheme in '" .. url .. "'") end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return bad_url("scheme must be http or https, got '" .. scheme .. "'")
  end
  if url:find("[%z\1-\32\127]") then return bad_url("contains spaces or control characters") end
  if rest == "" or rest:sub(1, 1) == "/" then return bad_url("no host in '" .. url .. "'") end
  remember_url(url)
  return true
end

local TOKEN = "^[%w!#$%%&'*+%.^_`|~%-]+$"

local function check_number(opts, key, min)
  local v = opts[key]
  if v == nil then return M.defaults[key] end
  if type(v) ~= "number" or v ~= v or v < min or v >= 1e15 then
    return nil, key .. " must be a number >= " .. min
  end
  return v
end

-- One header line into the flat array, its value checked.
local function add_header(flat, name, v)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then
    return invalid("header " .. name .. " must be a string")
  end
  if find(v, "\r", 1, true) or find(v, "\n", 1, true) or find(v, "\0", 1, true) then
    return invalid("header " .. name .. " contains CR, LF or NUL")
  end
  flat[#flat + 1] = name
  flat[#flat + 1] = v
  return true
end

local TIMING = { "timeout_ms", "connect_timeout_ms", "max_redirects" }

-- Builds the native options (flat header array, defaults) from opts.
local function native_opts(opts)
  local ok, err, kind = check_url(opts.url)
  if not ok then return nil, err, kind end
  local method = opts.method
  if method == nil then
    method = opts.body ~= nil and "POST" or "GET"
  elseif not good_names[method] then
    if type(method) ~= "string" or not method:find(TOKEN) then
      return invalid("method must be a token such as GET or POST")
    end
    remember_name(method)
  end
  if opts.body ~= nil and type(opts.body) ~= "string" then
    return invalid("body must be a string, got " .. type(opts.body))
  end
  local flat = {}
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then return invalid("headers must be a table") end
    for name, value in pairs(opts.headers) do
      if not good_names[name] then
        if type(name) ~= "string" or not name:find(TOKEN) then
          return invalid("bad header name " .. tostring(name))
        end
        remember_name(name)
      end
      local added, herr, hkind
      if type(value) == "table" then
        for _, v in ipairs(value) do
          added, herr, hkind = add_header(flat, name, v)
          if not added then return nil, herr, hkind end
        end
      else
        added, herr, hkind = add_header(flat, name, value)
        if not added then return nil, herr, hkind end
      end
    end
  end
  if opts.ca_file ~= nil and (type(opts.ca_file) ~= "string" or opts.ca_file == "" or opts.ca_file:find("%z")) then
    return invalid("ca_file must be a file path")
  end
  local n = { url = opts.url, method = upper(method), body = opts.body, headers = flat,
              follow_redirects = opts.follow_redirects and true or false, ca_file = opts.ca_file }
  for _, key in ipairs(TIMING) do
    n[key], err = check_number(opts, key, 0)
    if n[key] == nil then return invalid(err) end
  end
  n.max_body_bytes, err = check_number(opts, "max_body_bytes", 1)
  if not n.max_body_bytes then return invalid(err) end
  if opts.deny_internal then
    n.deny_internal = true
    if opts.allow ~= nil and type(opts.allow) ~= "table" then return invalid("allow must be a list") end
    n.allow = opts.allow
  end
  return n
end

-- Lower-cased header map from the flat {name, value, ...} array.
local function header_map(flat)
  local h = {}
  for i = 1, #flat, 2 do
    local name, value = lower(flat[i]), flat[i + 1]
    local old = h[name]
    h[name] = old and (old .. ", " .. value) or value
  end
  return h
end

-- The error triple of a native failure (nil, word, message | bare nil).
local function failure(word, message)
  if word == nil then word = "out of memory" end
  if message == nil or message == "" or word == "timeout" then
    return nil, word, word
  end
  return nil, word .. ": " .. message, word
end

-- request(opts) -> res | nil, err, kind (see the top of the file)
function M.request(opts)
  if type(opts) ~= "table" then return invalid("options must be a table") end
  local n, err, kind = native_opts(opts)
  if not n then return nil, err, kind end
  local status, headers, body = curl_request(n)
  if status then
    return { status = status, headers = header_map(headers), body = body }
  end
  -- nil, word, message from curl; nil, "cancelled"|"timeout" from the
  -- scheduler; a bare nil when the results could not be allocated.
  return failure(headers, body)
end

local Stream = {}
Stream.__index = Stream

-- stream:read() -> chunk | nil | nil, err, kind
function Stream:read()
  local chunk, word, message = self._native:read()
  if chunk then return chunk end
  if chunk == false then return nil end -- the end of the body
  return failure(word, message)
end

-- stream:read_sse([chat]) -> lines | false, cut | nil, err, kind: a
-- text/event-stream body's complete lines, split as they arrive
-- ({field1, value1, ...}, a blank line as "", ""; for
-- chorus.http.sse's feed_lines), or false at the end (cut: it ended
-- inside a line). A stream is read with read() or read_sse(), not both.
-- chat: an event's data that is a chat completion chunk comes read
-- (numbered pseudo-lines, runtime/rt_lua_curl.c; feed_lines hands them
-- to its on_chat).
function Stream:read_sse(chat)
  local lines, word, message = self._native:read_sse(chat)
  if lines then return lines end
  if lines == false then return false, word end
  return failure(word, message)
end

function Stream:close()
  self._native:close()
end

-- open(opts) -> stream | nil, err, kind (see the top of the file)
function M.open(opts)
  if type(opts) ~= "table" then return invalid("options must be a table") end
  local n, err, kind = native_opts(opts)
  if not n then return nil, err, kind end
  if opts.buffer_bytes ~= nil then
    local b = opts.buffer_bytes
    if type(b) ~= "number" or b ~= b or b < 1 or b >= 1e15 then
      return invalid("buffer_bytes must be a number >= 1")
    end
    n.buffer_bytes = b
  end
  local s, word, message = native.curl_open(n)
  if not s then return failure(word, message) end
  local status, headers
  status, headers, message = s:head()
  if not status then
    s:close()
    return failure(headers, message)
  end
  return setmetatable({ status = status, headers = header_map(headers), _native = s }, Stream)
end

local function copy(opts)
  local t = {}
  if opts ~= nil then
    if type(opts) ~= "table" then return nil end
    for k, v in pairs(opts) do t[k] = v end
  end
  return t
end

-- get(url, opts) -> res | nil, err, kind
function M.get(url, opts)
  local o = copy(opts)
  if not o then return invalid("options must be a table") end
  o.url, o.method = url, "GET"
  return M.request(o)
end

-- is_json(content_type) -> true for application/json and */*+json
function M.is_json(ctype)
  if type(ctype) ~= "string" then return false end
  local mime = lower(ctype:match("^%s*([^;%s]+)") or "")
  return mime == "application/json" or mime:find("^[%w%.%-]+/[%w%.%-]+%+json$") ~= nil
end

-- Sets headers[name] = value unless present in any letter case.
local function default_header(headers, name, value)
  for k in pairs(headers) do
    if type(k) == "string" and lower(k) == name then return end
  end
  headers[name] = value
end

-- post_json(url, value, opts) -> res | nil, err, kind
-- Sends value encoded with chorus.json (content-type application/json).
-- When the response is JSON, res.json holds it decoded (or res.json_error
-- says why it could not be decoded; the response is still returned).
function M.post_json(url, value, opts)
  local o = copy(opts)
  if not o then return invalid("options must be a table") end
  local body, err = json.encode(value)
  if not body then return invalid("cannot encode the body as JSON: " .. tostring(err)) end
  local headers = {}
  if o.headers ~= nil then
    if type(o.headers) ~= "table" then return invalid("headers must be a table") end
    for k, v in pairs(o.headers) do headers[k] = v end
  end
  default_header(headers, "content-type", "application/json")
  default_header(headers, "accept", "application/json")
  o.url, o.method, o.body, o.headers = url, o.method or "POST", body, headers
  local res, rerr, kind = M.request(o)
  if not res then return nil, rerr, kind end
  if M.is_json(res.headers["content-type"]) then
    res.json, res.json_error = json.decode(res.body)
  end
  return res
end

M.check_url = check_url
return M
