-- One front door: every execute goes through chorus.run.service (a stored
-- config found in scope, checked active, prepared through the engine's one
-- cache), the WebSocket endpoints are routes of the API's router, both
-- runners have one interface, and the state sets live in states.lua.
local h = require "spec.helpers"
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local memory = require "chorus.store.memory"
local service = require "chorus.run.service"
local states = require "chorus.engine.states"

local function setup_service()
  local store = memory.new()
  local engine = h.engine({ store = store })
  local runner = require("chorus.run.memory").new({ engine = engine })
  return service.new({ engine = engine, store = store, runner = runner }), engine, store
end

local DOC = { name = "door", strategy = "sequential", steps = { { id = "a", agent = "echo" } } }

-- stored(...) -> the store's own record (edited below behind its back)
local function stored(store, engine, doc, active)
  local cfg = assert(engine:validate(doc))
  local rec = assert(store:create_config(cfg, { tenant_id = "t1", user_id = "u1" }))
  local own = store.configs[rec.id]
  own.is_active = active ~= false
  return own
end

describe("the front door", function()
  it("starts a stored config by name or id, and says why it will not", function()
    local svc, engine, store = setup_service()
    local rec = stored(store, engine, DOC)
    local scope = { tenant_id = "t1", user_id = "u1" }
    local res = assert(svc:execute("door", { job_name = "X" }, { user_id = "u1", tenant_id = "t1" }, scope))
    local exec = store:get_execution(res.execution_id)
    exec:wait()
    assert.equal("completed", exec.status)
    assert.equal(rec.id, exec.config_id)
    assert.equal(rec.version, exec.config_version)
    assert.truthy(svc:execute(rec.id, {}, {}, scope))

    local ok, msg, code = svc:execute("nope", {}, {}, scope)
    assert.is_nil(ok)
    assert.equal("not_found", code)
    assert.equal("no config 'nope'", msg)

    stored(store, engine, { name = "off", strategy = "sequential", steps = { { id = "a", agent = "echo" } } }, false)
    ok, msg, code = svc:execute("off", {}, {}, scope)
    assert.is_nil(ok)
    assert.equal("inactive", code)
    assert.equal("config 'off' is not active", msg)
  end)

  it("refuses a stored config the loaded scripts no longer accept, with every error", function()
    local svc, engine, store = setup_service()
    local rec = stored(store, engine, DOC)
    rec.steps.steps[1].agent = "gone_agent"
    rec.version = rec.version + 1
    local ok, msg, code, errs = svc:execute("door", {}, {}, { tenant_id = "t1", user_id = "u1" })
    assert.is_nil(ok)
    assert.equal("invalid_config", code)
    assert.matches("no longer valid", msg)
    assert.matches("gone_agent", errs[1].message)
  end)

  it("prepares a stored config once per version and scripts generation", function()
    local _, engine = setup_service()
    local a = assert(engine:prepare(DOC, "id1:1"))
    assert.equal(a, engine:prepare(DOC, "id1:1"))
    assert.not_equal(a, engine:prepare(DOC, "id1:2"))
    engine.registry:load() -- a reload: a new generation
    assert.not_equal(a, engine:prepare(DOC, "id1:1"))
    assert.not_equal(engine:prepare(DOC), engine:prepare(DOC)) -- no key: validated each time
  end)

  it("serves the WebSocket endpoints as routes of the API's router, a key also as ?api_key=", function()
    local store = memory.new()
    local engine = h.engine({ store = store })
    local svc = { engine = engine, store = store, runner = require("chorus.run.memory").new({ engine = engine }),
      auth = auth.new({ store = store, ttl_ms = 0 }) }
    local app = api.new(svc)
    for _, path in ipairs({ "/ws/execute/door", "/ws/executions/0b1f1c1e-0000-4000-8000-000000000000", "/ws/events" }) do
      local route, _, template = app.router:match("GET", path)
      assert.truthy(route, path)
      assert.is_true(route.websocket, path)
      assert.matches("^/ws/", template)
    end
    -- Without a key: the router's 401, as REST answers it.
    local status, _, body = app:handle({ method = "GET", path = "/ws/events", query = "", headers = {},
      is_websocket = true })
    assert.equal(401, status)
    assert.matches('"code":"unauthorized"', body)
    -- ?api_key= names a key on WebSocket routes only; a REST route wants the header.
    local key, k = auth.generate()
    store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t", user_id = "u", role = "viewer" })
    status = app:handle({ method = "GET", path = "/ws/events", query = "api_key=" .. key, headers = {},
      is_websocket = true })
    assert.equal(403, status) -- known, but a viewer is no admin
    status = app:handle({ method = "GET", path = "/api/v1/orchestrations/configs", query = "api_key=" .. key,
      headers = {} })
    assert.equal(401, status)
  end)

  it("has one runner interface, implemented by the in-memory runner and the node", function()
    local memory_runner = require("chorus.run.memory").new({ engine = h.engine() })
    local node = require("chorus.run.node").new({ engine = h.engine(), pool = {}, store = {} })
    for _, name in ipairs({ "submit", "control", "stop", "close" }) do
      assert.is_function(memory_runner[name], "memory runner: " .. name)
      assert.is_function(node[name], "node: " .. name)
    end
  end)

  it("keeps the status sets in states.lua alone", function()
    assert.same({ completed = true, failed = true, cancelled = true }, states.execution_terminal)
    local found = {}
    local p = io.popen("grep -rln 'completed = true, failed = true, cancelled = true' " .. h.root .. "/lua")
    for line in p:lines() do found[#found + 1] = line:gsub("^.*/lua/", "lua/") end
    p:close()
    assert.same({ "lua/chorus/engine/states.lua" }, found)
  end)
end)
