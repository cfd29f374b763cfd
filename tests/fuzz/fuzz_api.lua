-- tests/fuzz/fuzz_api.lua: the Lua half of the fuzz_api target. It frames
-- an input as up to MAX_REQUESTS HTTP requests, runs them in order through
-- chorus.api's app:handle over a FRESH memory store (so an input replays
-- alone, and the store never grows across inputs), and checks every
-- response.
--
-- Framing (requests separated by a line "###"):
--   <selector byte><METHOD> <path>[?<query>]\n
--   <name>: <value>\n          (up to MAX_HEADERS; names lower-cased)
--   \n
--   <body>
-- selector % 16: 0-2 admin key, 3-5 operator key, 6 no Authorization,
-- 7 only the Authorization the input gives; +8 = no default content-type
-- (otherwise "application/json" unless the input gives one). So '0'..'7'
-- are requests with a JSON content type, '8'..'?' without one.
-- In the path, {trace} and {id} become the trace_id and the id of the last
-- response that had one (ids are random: an input could not name them).
--
-- A response fails the check when handle raises, the status is not an
-- integer in 100..499 (any 5xx is a bug: the memory store never fails),
-- headers or body have the wrong types, an application/json body is not
-- JSON or has an empty top-level list (LIST_FIELDS) written as {}, or an
-- error (>= 400) lacks {"error": {"code", "message", "details"}} with a
-- code of that status and details [{path, message}] (a 405 needs Allow,
-- a 401 WWW-Authenticate: Bearer); the admin page's 404 is its HTML page.
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local engine_mod = require "chorus.engine"
local errors = require "chorus.api.errors"
local json = require "chorus.json"
local log = require "chorus.log"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local sched = require "chorus.sched"
local fuzz_mutate = require "fuzz_mutate"

local M = {}

local MAX_REQUESTS, MAX_HEADERS, MAX_LOG = 4, 16, 20
-- CHORUS_FUZZ_TRACE=1: print each request and its response on stderr
-- (to see what a corpus file or a crash input does).
local TRACE = os.getenv("CHORUS_FUZZ_TRACE") == "1"
local SEPARATOR = "\n###\n"
-- Top-level fields that hold lists in the API's answers: a page's items,
-- an execution record's steps, the registry's entries and errors.
local LIST_FIELDS = { "items", "steps", "errors", "strategies", "agents", "aggregators" }

local engine         -- shared: loading the registry costs more than a request
local keys = {}      -- role -> {key = "chk_...", rec = {prefix, hash}}
local logged = {}    -- log lines of the current input (the last MAX_LOG)

-- Log records go to `logged` (shown with a failure) instead of stderr.
log.sink = { write = function(_, s)
  if #logged >= MAX_LOG then table.remove(logged, 1) end
  logged[#logged + 1] = s
end }

function M.setup()
  engine = assert(engine_mod.new({}))
  for _, role in ipairs({ "admin", "operator" }) do
    local key, rec = auth.generate()
    keys[role] = { key = key, rec = rec }
  end
  return true
end

-- A service like spec/01-unit/12-api_spec.lua's, over a new store. The
-- engine's registry is shared; its store is this input's.
local function new_service()
  local store = memory.new()
  local eng = setmetatable({ store = store }, { __index = engine })
  local svc = { engine = eng, store = store, runner = runner_mod.new({ engine = eng }),
    auth = auth.new({ store = store, ttl_ms = 0 }) }
  for role, k in pairs(keys) do
    store:create_key({ prefix = k.rec.prefix, hash = k.rec.hash, tenant_id = "t1",
      user_id = role == "admin" and "root" or "alice", role = role })
  end
  svc.app = api.new(svc)
  return svc
end

local function split(s, sep, max)
  local out, pos = {}, 1
  while #out < max - 1 do
    local a, b = s:find(sep, pos, true)
    if not a then break end
    out[#out + 1] = s:sub(pos, a - 1)
    pos = b + 1
  end
  out[#out + 1] = s:sub(pos)
  return out
end

-- frame_one(chunk, vars) -> req
local function frame_one(chunk, vars)
  local sel = (chunk:byte(1) or 0) % 16
  local rest = chunk:sub(2)
  local headers, n = {}, 0
  local nl = rest:find("\n", 1, true)
  local line = nl and rest:sub(1, nl - 1) or rest
  local pos = nl and nl + 1 or #rest + 1
  local method, target = line:gsub("\r$", ""):match("^(%S*) ?(.*)$")
  local path, query = target:match("^([^?]*)%??(.*)$")
  path = path:gsub("{(%a+)}", vars)
  while pos <= #rest do
    local e = rest:find("\n", pos, true) or #rest + 1
    local h = rest:sub(pos, e - 1):gsub("\r$", "")
    pos = e + 1
    if h == "" then break end
    local name, value = h:match("^([^:]*):[ \t]*(.-)[ \t]*$")
    if name and n < MAX_HEADERS then
      headers[name:lower()] = value
      n = n + 1
    end
  end
  local body = rest:sub(pos)
  local who = sel % 8
  if who <= 2 then
    headers.authorization = "Bearer " .. keys.admin.key
  elseif who <= 5 then
    headers.authorization = "Bearer " .. keys.operator.key
  elseif who == 6 then
    headers.authorization = nil
  end
  if sel < 8 and headers["content-type"] == nil then
    headers["content-type"] = "application/json"
  end
  return { method = method, path = path, query = query, headers = headers, body = body }
end

-- The admin page's paths (api/admin_routes.lua): a person reads them, so
-- their 404 is an HTML page, and their files are not JSON.
local function page_path(path)
  return path == "/" or path == "/docs" or path == "/admin" or path:sub(1, 7) == "/admin/"
end

-- check(status, headers, body, vars, path) -> nil | what is wrong
local function check(status, headers, body, vars, path)
  if type(status) ~= "number" or status % 1 ~= 0 then return "status is not an integer: " .. tostring(status) end
  if status >= 500 then return ("status %d (body %s)"):format(status, tostring(body)) end
  if status < 100 then return "status below 100: " .. status end
  if type(headers) ~= "table" then return "headers are a " .. type(headers) end
  for k, v in pairs(headers) do
    if type(k) ~= "string" or type(v) ~= "string" then
      return ("header %s has a %s value"):format(tostring(k), type(v))
    end
  end
  if type(body) ~= "string" then return "body is a " .. type(body) end
  local ct = headers["content-type"]
  local doc
  if ct and ct:match("^application/json") then
    local err
    doc, err = json.decode(body)
    if doc == nil then return ("content-type is JSON but the body is not (%s): %s"):format(err, body) end
    if type(doc) == "table" then
      if type(doc.trace_id) == "string" then vars.trace = doc.trace_id end
      if type(doc.id) == "string" then vars.id = doc.id end
    end
    -- The API's lists: empty, they must still be [] (cjson writes {}).
    for _, name in ipairs(LIST_FIELDS) do
      local v = type(doc) == "table" and doc[name]
      if type(v) == "table" and next(v) == nil and not body:find('"' .. name .. '":[]', 1, true) then
        return ("empty list %s encoded as an object, not []: %s"):format(name, body)
      end
    end
  end
  if page_path(path) and status == 404 then
    if headers["content-type"] ~= "text/html; charset=utf-8" or not body:find("Page not found", 1, true) then
      return "the admin page's 404 is not its HTML page: " .. body
    end
    return nil
  end
  if status >= 400 then
    local e = type(doc) == "table" and doc.error
    if type(e) ~= "table" then return ("error %d without an {\"error\": {...}} JSON body: %s"):format(status, body) end
    if type(e.code) ~= "string" or type(e.message) ~= "string" or type(e.details) ~= "table" then
      return "error body lacks code, message or details: " .. body
    end
    if errors.STATUS[e.code] ~= status then
      return ("error code %s does not match status %d"):format(e.code, status)
    end
    if next(e.details) == nil and not body:find('"details":[]', 1, true) then
      return "empty details encoded as an object, not []: " .. body
    end
    for i, d in ipairs(e.details) do
      if type(d) ~= "table" or type(d.path) ~= "string" or type(d.message) ~= "string" then
        return ("details[%d] is not {path, message}: %s"):format(i - 1, body)
      end
    end
    if #e.details ~= 0 and not json.is_array(e.details) then return "details is not a list: " .. body end
    if status == 405 and type(headers.allow) ~= "string" then return "405 without Allow" end
    if status == 401 and headers["www-authenticate"] ~= "Bearer" then return "401 without WWW-Authenticate" end
  end
  return nil
end

local function describe(req)
  local hs = {}
  for k, v in pairs(req.headers) do hs[#hs + 1] = k .. ": " .. v end
  table.sort(hs)
  return ("%s %s?%s {%s} body %q"):format(req.method, req.path, req.query, table.concat(hs, "; "), req.body)
end

-- one(data) -> true | nil, what failed
function M.one(data)
  logged = {}
  local svc = new_service()
  local failure, vars = nil, {}
  for i, chunk in ipairs(split(data, SEPARATOR, MAX_REQUESTS)) do
    local req = frame_one(chunk, vars)
    local ok, status, headers, body = xpcall(svc.app.handle, debug.traceback, svc.app, req)
    if TRACE then
      io.stderr:write(("> %s\n< %s %s\n"):format(describe(req), tostring(status), tostring(body)))
    end
    local why
    if not ok then
      why = "handle raised: " .. tostring(status)
    else
      why = check(status, headers, body, vars, req.path)
    end
    if why then
      failure = ("request %d: %s\n  %s"):format(i, describe(req), why)
      break
    end
    sched.sleep(0) -- background executions move on between requests
  end
  svc.runner:close()
  if failure then
    return nil, failure .. (#logged > 0 and ("\n  log:\n  " .. table.concat(logged, "  ")) or "")
  end
  return true
end

-- mutate(data, seed) -> data with one JSON node changed in the body of
-- one request | nil (that body is not JSON)
function M.mutate(data, seed)
  local chunks = split(data, SEPARATOR, MAX_REQUESTS)
  local i = seed % #chunks + 1
  local c = chunks[i]
  local _, e = c:find("\n\r?\n")
  if not e then return nil end
  local body = fuzz_mutate.mutate(c:sub(e + 1), math.floor(seed / 8))
  if not body then return nil end
  chunks[i] = c:sub(1, e) .. body
  return table.concat(chunks, SEPARATOR)
end

return M
