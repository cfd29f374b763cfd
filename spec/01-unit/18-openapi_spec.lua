-- The OpenAPI document (GET /api/v1/openapi.json) against the API itself:
-- every route the router serves is documented (the list comes from the
-- router, so a new route fails here until it is), every documented route
-- answers (no 404/405), and every response captured while this spec runs
-- is documented for its status and valid against its schema.
local h = require "spec.helpers"
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local json = require "chorus.json"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local schema = require "spec.support.json_schema"

local svc, doc
local captured = {} -- {method, pattern, path, status, headers, body}
local keys = {}

local function new_service()
  local store = memory.new()
  local engine = h.engine({ store = store })
  local s = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
    auth = auth.new({ store = store, ttl_ms = 0 }), node_id = "spec-node" }
  s.app = api.new(s)
  return s
end

local function key_for(tenant, user, role)
  local key, k = auth.generate()
  svc.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = tenant, user_id = user, role = role })
  return key
end

-- call(method, path, body, key, headers) -> status, decoded body; every
-- answer is kept for the schema checks.
local function call(method, path, body, key, headers)
  local p, q = path:match("^([^?]*)%??(.*)$")
  local hd = { ["content-type"] = "application/json" }
  if key then hd.authorization = "Bearer " .. key end
  for k, v in pairs(headers or {}) do hd[k] = v or nil end
  if type(body) == "table" then body = json.encode(body) end
  local status, rh, rb = svc.app:handle({ method = method, path = p, query = q, headers = hd, body = body or "" })
  local _, _, pattern = svc.app.router:match(method, p)
  captured[#captured + 1] = { method = method, pattern = pattern, path = path, status = status, headers = rh or {}, body = rb }
  local ok, decoded = pcall(json.decode, rb)
  return status, ok and decoded or nil
end

-- A WebSocket route: /ws/... or the plan's /api/v1/orchestrations/ws/...
local function is_ws(path) return path:find("/ws/", 1, true) ~= nil end

local function operation(method, pattern)
  local item = doc.paths[pattern]
  return item and item[method:lower()]
end

-- response_spec(op, status) -> the documented response (refs followed)
local function response_spec(op, status)
  local r = op.responses[tostring(status)] or op.responses.default
  if r and r["$ref"] then r = schema.resolve(doc, r["$ref"]) end
  return r
end

local function check_response(c)
  local op = operation(c.method == "HEAD" and "GET" or c.method, c.pattern)
  assert(op, ("%s %s (%s) is not documented"):format(c.method, c.pattern, c.path))
  local r = response_spec(op, c.status)
  assert(r, ("%s %s answered %d, which is not documented"):format(c.method, c.path, c.status))
  if not r.content then
    assert(c.body == nil or c.body == "", ("%s %s: %d has no documented body, got %s"):format(c.method, c.path, c.status, tostring(c.body)))
    return
  end
  local ctype = (c.headers["content-type"] or ""):match("^[^;]+")
  local media = r.content[ctype]
  assert(media, ("%s %s: %d sent %s, documented: %s"):format(c.method, c.path, c.status, tostring(ctype),
    table.concat((function() local t = {} for k in pairs(r.content) do t[#t + 1] = k end return t end)(), ", ")))
  if ctype == "application/json" then
    local v = json.decode(c.body)
    assert(v ~= nil, ("%s %s: the body is not JSON: %s"):format(c.method, c.path, tostring(c.body)))
    local ok, errs = schema.validate(doc, media.schema, v)
    assert(ok, ("%s %s -> %d does not match its schema:\n  %s\nbody: %s"):format(c.method, c.path, c.status,
      table.concat(errs or {}, "\n  "), c.body:sub(1, 600)))
  end
end

local CONFIG = { name = "doc-cfg", description = "documented", strategy = "sequential", steps = {
  { id = "a", agent = "metered", params = { tokens = 3, cost = 0.01 } },
  { id = "b", agent = "echo", dependencies = { "a" } } } }
local GATED = { name = "doc-gated", strategy = "sequential", steps = {
  { id = "gate", agent = "echo", approval = true } } }

describe("OpenAPI document", function()
  setup(function()
    svc = new_service()
    keys.admin = key_for("t1", "root", "admin")
    keys.op = key_for("t1", "alice", "operator")
    keys.viewer = key_for("t1", "victor", "viewer")
  end)

  it("is served without a key, as OpenAPI 3.1 with the bearer scheme, and revalidates by ETag", function()
    local status, d = call("GET", "/api/v1/openapi.json")
    assert.equal(200, status)
    doc = d
    assert.equal("3.1.0", doc.openapi)
    assert.equal("bearer", doc.components.securitySchemes.bearer.scheme)
    assert.same({ { bearer = {} } }, doc.security)
    local etag = captured[#captured].headers.etag
    assert.is_string(etag)
    assert.equal(304, (call("GET", "/api/v1/openapi.json", nil, nil, { ["if-none-match"] = etag })))
    -- the error shape
    local err = doc.components.schemas.Error
    assert.same({ "code", "message" }, err.properties.error.required)
    assert.is_table(doc.components.schemas.ErrorDetail.properties.path)
  end)

  it("documents every route the router serves, with its path parameters", function()
    assert.is_true(#svc.app.router.routes >= 25)
    for _, r in ipairs(svc.app.router.routes) do
      local op = operation(r.method, r.pattern)
      assert(op, ("%s %s is served but not documented"):format(r.method, r.pattern))
      assert.is_string(op.summary)
      assert.is_table(op.responses)
      local declared = {}
      for _, p in ipairs(op.parameters or {}) do if p["in"] == "path" then declared[p.name] = true end end
      for name in r.pattern:gmatch("{([%w_]+)}") do
        assert(declared[name], ("%s %s: path parameter %s is not documented"):format(r.method, r.pattern, name))
        declared[name] = nil
      end
      assert.is_nil(next(declared), ("%s %s documents a path parameter it does not have"):format(r.method, r.pattern))
    end
  end)

  it("documents no route the server does not answer", function()
    -- Real values for the path parameters: a config, a version, an
    -- execution waiting at a step.
    assert.equal(201, (call("POST", "/api/v1/orchestrations/configs", CONFIG, keys.op)))
    assert.equal(201, (call("POST", "/api/v1/orchestrations/configs", GATED, keys.op)))
    local _, run = call("POST", "/api/v1/orchestrations/execute/doc-gated", {}, keys.op)
    local values = { key = "doc-cfg", version = "1", config = "doc-cfg", trace_id = run.trace_id, step_id = "gate" }
    local n = 0
    for pattern, item in pairs(doc.paths) do
      for method in pairs(item) do
        local path = pattern:gsub("{([%w_]+)}", function(name) return assert(values[name], name) end)
        if is_ws(pattern) then
          -- WebSocket routes: without a key, refused with the error shape
          local status, hd, body = svc.app:handle({ method = "GET", path = path, query = "", headers = {}, is_websocket = true })
          assert.equal(401, status, pattern)
          captured[#captured + 1] = { method = "GET", pattern = pattern, path = path, status = status, headers = hd, body = body }
        elseif method ~= "delete" then
          local status = call(method:upper(), path, method == "get" and nil or {}, keys.admin)
          assert(status ~= 404 and status ~= 405, ("%s %s answered %d"):format(method:upper(), path, status))
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 28)
    -- DELETE last: it removes what the others use.
    assert.equal(204, (call("DELETE", "/api/v1/orchestrations/configs/doc-cfg", nil, keys.op)))
  end)

  it("matches every response of a real session (successes and errors)", function()
    local O = keys.op
    -- configs
    assert.equal(201, (call("POST", "/api/v1/orchestrations/configs", CONFIG, O)))
    call("GET", "/api/v1/orchestrations/configs?search=DOC&limit=5", nil, keys.viewer)
    call("GET", "/api/v1/orchestrations/configs/doc-cfg", nil, O)
    call("PATCH", "/api/v1/orchestrations/configs/doc-cfg", { is_active = false }, O)
    call("PATCH", "/api/v1/orchestrations/configs/doc-cfg", { is_active = true, description = "second" }, O)
    call("PUT", "/api/v1/orchestrations/configs/doc-cfg", CONFIG, O)
    call("GET", "/api/v1/orchestrations/configs/doc-cfg/versions/2", nil, O)
    -- executions
    local _, r1 = call("POST", "/api/v1/orchestrations/execute/doc-cfg", { input = { x = 1 } }, O, { ["idempotency-key"] = "k1" })
    call("POST", "/api/v1/orchestrations/execute/doc-cfg", { input = { x = 1 } }, O, { ["idempotency-key"] = "k1" })
    call("POST", "/api/v1/orchestrations/execute", { config = CONFIG, input = {} }, O)
    svc.store:get_execution(r1.trace_id):wait()
    call("GET", "/api/v1/orchestrations/status/" .. r1.trace_id, nil, O)
    call("GET", "/api/v1/orchestrations/executions/" .. r1.trace_id .. "/graph", nil, O)
    call("GET", "/api/v1/orchestrations/executions?status=completed&since=2020-01-01T00:00:00Z", nil, O)
    local _, gated = call("POST", "/api/v1/orchestrations/execute/doc-gated", {}, O)
    h.wait_until(function() return svc.store:get_record(gated.trace_id).status == "paused" end)
    call("POST", "/api/v1/orchestrations/executions/" .. gated.trace_id .. "/steps/gate/reject", { reason = "no" }, O)
    svc.store:get_execution(gated.trace_id):wait()
    call("POST", "/api/v1/orchestrations/executions/" .. gated.trace_id .. "/cancel", nil, O) -- 409: ended
    -- the rest
    call("GET", "/api/v1/registry", nil, keys.viewer)
    call("POST", "/api/v1/registry/reload", nil, keys.admin)
    call("GET", "/api/v1/stats?window=600", nil, O)
    call("GET", "/api/v1/whoami", nil, keys.viewer)
    call("GET", "/healthz")
    call("GET", "/readyz")
    call("GET", "/metrics")
    -- errors of every kind
    call("GET", "/api/v1/orchestrations/configs")                                        -- 401
    call("POST", "/api/v1/orchestrations/configs", CONFIG, keys.viewer)                   -- 403
    call("GET", "/api/v1/orchestrations/configs/nope", nil, O)                            -- 404
    call("PATCH", "/api/v1/orchestrations/configs/doc-cfg", { colour = "red" }, O)        -- 422
    call("PATCH", "/api/v1/orchestrations/configs/doc-cfg", "{", O)                       -- 400
    call("POST", "/api/v1/orchestrations/configs", CONFIG, O, { ["content-type"] = "text/plain" }) -- 415
    call("POST", "/api/v1/orchestrations/configs", CONFIG, O)                             -- 409
    call("GET", "/api/v1/orchestrations/executions?since=yesterday", nil, O)             -- 400
    call("GET", "/api/v1/stats?window=5", nil, O)                                         -- 400
    call("GET", "/api/v1/orchestrations/status/not-a-uuid", nil, O)                       -- 400
    call("GET", "/api/v1/orchestrations/configs/doc-cfg/versions/99", nil, O)             -- 404
    local seen = {}
    for _, c in ipairs(captured) do
      if c.pattern then
        check_response(c)
        seen[c.method:lower() .. " " .. c.pattern] = true
      elseif c.pattern == nil and is_ws(c.path) then
        check_response(c)
      end
    end
    -- every documented operation had at least one real answer checked
    for pattern, item in pairs(doc.paths) do
      for method in pairs(item) do
        if not is_ws(pattern) then
          assert(seen[method .. " " .. pattern], ("no response of %s %s was checked"):format(method:upper(), pattern))
        end
      end
    end
    local statuses = {}
    for _, c in ipairs(captured) do statuses[c.status] = true end
    for _, s in ipairs({ 200, 201, 202, 204, 304, 400, 401, 403, 404, 409, 415, 422 }) do
      assert(statuses[s], "no response with status " .. s .. " was checked")
    end
  end)

  it("the validator refuses what does not match (it can fail)", function()
    local s = { type = "object", required = { "a" }, additionalProperties = false,
      properties = { a = { type = "integer", minimum = 1 }, b = { type = { "string", "null" } } } }
    assert.is_true(schema.validate(doc, s, { a = 2, b = json.null }))
    for _, bad in ipairs({ { b = "x" }, { a = 0 }, { a = 1.5 }, { a = 1, c = true }, { a = 1, b = 3 }, "str" }) do
      assert.is_nil((schema.validate(doc, s, bad)), json.encode(bad))
    end
    assert.is_nil((schema.validate(doc, { ["$ref"] = "#/components/schemas/Error" }, { error = { code = "nope", message = "m" } })))
    assert.is_true(schema.validate(doc, { ["$ref"] = "#/components/schemas/Error" },
      { error = { code = "not_found", message = "m", details = {} } }))
    assert.has_error(function() schema.validate(doc, { pattern = "x" }, "x") end)
  end)
end)
