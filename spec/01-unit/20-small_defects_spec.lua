-- Smaller defects the adversarial campaign found, each fixed: keys and
-- paths, registry reports, options checked, directories watched.
local h = require "spec.helpers"
local json = require "chorus.json"
local native = require "chorus.native"
local registry = require "chorus.engine.registry"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local api = require "chorus.api"
local auth = require "chorus.api.auth"

local function service()
  local store = memory.new()
  local engine = h.engine({ store = store })
  local svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
    auth = auth.new({ store = store, ttl_ms = 0 }) }
  svc.app = api.new(svc)
  local keys = {}
  for _, u in ipairs({ "alice", "bob" }) do
    local key, k = auth.generate()
    store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t", user_id = u, role = "operator" })
    keys[u] = key
  end
  return svc, keys
end

local function call(svc, method, path, body, key, headers)
  local p, q = path:match("^([^?]*)%??(.*)$")
  local hd = { ["content-type"] = "application/json", authorization = key and ("Bearer " .. key) or nil }
  for k, v in pairs(headers or {}) do hd[k] = v end
  local status, _, rb = svc.app:handle({ method = method, path = p, query = q, headers = hd,
    body = type(body) == "table" and json.encode(body) or body or "" })
  return status, rb
end

describe("smaller defects", function()
  it("an Idempotency-Key is the user's own, not the tenant's", function()
    local svc, keys = service()
    local doc = { config = h.flat("sequential", { { id = "a", agent = "echo" } }) }
    local hdr = { ["idempotency-key"] = "order-1" }
    local s1, b1 = call(svc, "POST", "/api/v1/orchestrations/execute", doc, keys.alice, hdr)
    local s2, b2 = call(svc, "POST", "/api/v1/orchestrations/execute", doc, keys.bob, hdr)
    local s3, b3 = call(svc, "POST", "/api/v1/orchestrations/execute", doc, keys.alice, hdr)
    assert.equal(202, s1)
    assert.equal(202, s2) -- another user of the tenant: an execution of their own
    assert.are_not.equal(json.decode(b1).trace_id, json.decode(b2).trace_id)
    assert.equal(200, s3) -- the same user again: the first one, replayed
    assert.equal(json.decode(b1).trace_id, json.decode(b3).trace_id)
  end)

  it("an error body quoting path bytes that are not UTF-8 is still valid JSON", function()
    local svc, keys = service()
    local status, body = call(svc, "GET", "/api/\255\254x", nil, keys.alice)
    assert.equal(404, status)
    assert.is_true(native.utf8_valid(body))
    assert.matches("no route for GET /api/", json.decode(body).error.message)
  end)

  it("registry errors name the file relative to its script directory, with its line", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/broken.lua", "return { name = 'broken',\n call = function() end")
    local reg = registry.new({ dirs = { native.home, dir } })
    local _, errors = reg:load()
    assert.equal(1, #errors)
    local e = errors[1]
    assert.equal("agents/broken.lua", e.file)
    assert.equal(dir, e.dir)
    assert.equal(2, e.line)
    assert.matches("^agents/broken.lua:2:", e.message)
    assert.is_nil(e.message:find(dir, 1, true))
    local listed = reg:list()
    assert.equal("agents/broken.lua", listed.errors[1].file)
    for _, a in ipairs(listed.agents) do
      if a.name == "echo" then
        assert.equal("agents/echo.lua", a.file)
        assert.equal(native.home, a.dir)
      end
    end
  end)

  it("a syntax error in an agent is reported where the agent is used, not as an unknown agent", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/typo.lua", "return { name = 'typo', call = function() end")
    local engine = h.engine({ scripts = { dir } })
    local _, errs = engine:validate(h.flat("sequential", { { id = "a", agent = "typo" } }))
    assert.equal("steps[0].agent", errs[1].path)
    assert.matches("^agent 'typo' failed to load %(agents/typo.lua%): agents/typo.lua:1:", errs[1].message)
    _, errs = engine:validate(h.flat("sequential", { { id = "a", agent = "nothing_like_it" } }))
    assert.equal("unknown agent 'nothing_like_it'", errs[1].message)
  end)

  it("aggregator_options are checked against the rule's schema", function()
    local engine = h.engine()
    local steps = { { id = "a", agent = "echo", consensus_group = "g" } }
    local _, errs = engine:validate(h.flat("consensus", steps, { aggregator_options = { quorum = 7 } }))
    assert.equal("settings.aggregator_options.quorum", errs[1].path)
    _, errs = engine:validate(h.flat("consensus", steps,
      { aggregator = "weighted", aggregator_options = { key = "v", tolerence = 0.1 } }))
    assert.equal("settings.aggregator_options.tolerence", errs[1].path)
    _, errs = engine:validate(h.flat("consensus", steps, { aggregator = "majority", aggregator_options = { key = 5 } }))
    assert.equal("settings.aggregator_options.key", errs[1].path)
    assert.is_table(engine:validate(h.flat("consensus", steps, { aggregator_options = { key = "verdict" } })))
  end)

  it("a kind directory created after the start is watched", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0) -- an empty script directory
    local engine = h.engine({ scripts = { dir }, watch = true })
    assert.is_nil(engine.registry.current.agents.late)
    assert(os.execute("mkdir -p " .. dir .. "/agents") == 0)
    require("chorus.sched").sleep(100) -- the new directory is picked up first
    h.write(dir .. "/agents/late.lua", "return { name = 'late', call = function() return 'here' end }")
    assert.is_true(h.wait_until(function() return engine.registry.current.agents.late ~= nil end, 3000),
      "agents/late.lua was not picked up")
    assert(os.execute("mkdir -p " .. dir .. "/strategies/aggregators") == 0)
    require("chorus.sched").sleep(100)
    h.write(dir .. "/strategies/aggregators/first.lua",
      "return { name = 'first', aggregate = function(r) return r[1].output, { agreed = 1, total = #r, score = 1 } end }")
    assert.is_true(h.wait_until(function() return engine.registry.current.aggregators.first ~= nil end, 3000),
      "strategies/aggregators/first.lua was not picked up")
    engine:close()
  end)

  it("a --scripts directory that does not exist is an error (exit 2)", function()
    for _, cmd in ipairs({ "run examples/incident-triage.json", "validate examples/incident-triage.json",
      "serve --no-auth --listen 127.0.0.1:0" }) do
      local code, _, err = h.sh(("%s %s --scripts /no/such/dir"):format(h.binary, cmd))
      assert.equal(2, code, cmd)
      assert.matches("%-%-scripts /no/such/dir: no such directory", err)
    end
  end)
end)
