-- A write the database refuses is never ignored: outputs reach
-- PostgreSQL only as text it accepts, a refused step record fails that
-- step (nothing downstream runs on it), a refused end fails the
-- execution without what it produced, and the API answers NUL or
-- malformed text with a 4xx, not the database's 503. #postgres
local h = require "spec.helpers"
local json = require "chorus.json"
local pg = require "chorus.db.pg"
local pgstore = require "chorus.store.pg"
local node_mod = require "chorus.run.node"
local api = require "chorus.api"
local auth = require "chorus.api.auth"

local function open(url, agents)
  local dir = h.tmpdir()
  for name, body in pairs(agents or {}) do
    h.write(("%s/agents/%s.lua"):format(dir, name), ("return { name = %q, call = %s }"):format(name, body))
  end
  local pool = pg.pool(url, { size = 4 })
  local store = pgstore.new({ pool = pool })
  local engine = h.engine({ store = store, scripts = { dir } })
  local node = node_mod.new({ engine = engine, pool = pool, claim = false })
  return { pool = pool, store = store, engine = engine, node = node }
end

local function run(env, doc, input)
  local cfg = assert(env.engine:validate(doc))
  local r, exec = env.node:submit(cfg, input or {}, {})
  assert(r, exec)
  return assert(exec:wait())
end

local function rows(env, exec)
  local r = assert(env.pool:query([[SELECT step_id, status, error, output::text AS output
    FROM orchestration_step_runs WHERE execution_id = $1::uuid]], exec.id))
  local by = {}
  for _, row in ipairs(r.rows) do by[row.step_id] = row end
  local e = assert(env.pool:query([[SELECT status, error, output::text AS output, active
    FROM orchestration_executions WHERE id = $1::uuid]], exec.id)).rows[1]
  return by, e
end

describe("store refusals #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end
  local url = h.fresh_db("refusal")

  it("an output with NUL and malformed UTF-8 is stored repaired, and its dependent runs", function()
    local env = open(url, { dirty = 'function() return { log = "rc=12\\0\\255 end" } end' })
    local exec = run(env, h.flat("parallel", {
      { id = "s1", agent = "dirty" },
      { id = "s2", agent = "echo", dependencies = { "s1" } },
    }))
    assert.equal("completed", exec.status)
    local by, e = rows(env, exec)
    assert.equal("completed", by.s1.status)
    assert.equal("completed", by.s2.status)
    assert.equal("rc=12\239\191\189\239\191\189 end", json.decode(by.s1.output).log)
    assert.equal("completed", e.status)
    assert.is_false(e.active)
  end)

  it("a step result the database refuses fails that step; its dependent never runs", function()
    require("spec.support.log_guard").expect("store: write failed") -- on purpose
    require("spec.support.log_guard").expect("store write refused")
    local env = open(url, { boom = 'function() return { verdict = "BOOM" } end' })
    assert(env.pool:query([[ALTER TABLE orchestration_step_runs ADD CONSTRAINT spec_no_boom
      CHECK (output IS NULL OR output::text NOT LIKE '%BOOM%')]]))
    local exec = run(env, h.flat("parallel", {
      { id = "s1", agent = "boom" },
      { id = "s2", agent = "echo", dependencies = { "s1" } },
    }))
    assert(env.pool:query("ALTER TABLE orchestration_step_runs DROP CONSTRAINT spec_no_boom"))
    assert.equal("failed", exec.status)
    local s1 = exec:run_of("s1")
    assert.equal("failed", s1.status)
    assert.matches("^the database refused the step's result: .*spec_no_boom", s1.error)
    assert.equal("skipped", exec:run_of("s2").status)
    local by, e = rows(env, exec)
    assert.equal("failed", by.s1.status)
    assert.is_nil(by.s1.output)
    assert.equal("skipped", by.s2.status)
    assert.equal("failed", e.status)
    assert.matches("step s1 failed: the database refused", e.error)
    assert.is_false(e.active)
  end)

  it("an end the database refuses is recorded failed, without the output", function()
    require("spec.support.log_guard").expect("store: write failed") -- on purpose
    require("spec.support.log_guard").expect("store write refused")
    local env = open(url, { final = 'function() return { answer = "FINALBOOM" } end' })
    assert(env.pool:query([[ALTER TABLE orchestration_executions ADD CONSTRAINT spec_no_final
      CHECK (output IS NULL OR output::text NOT LIKE '%FINALBOOM%')]]))
    local exec = run(env, h.flat("sequential", { { id = "s1", agent = "final" } }))
    assert(env.pool:query("ALTER TABLE orchestration_executions DROP CONSTRAINT spec_no_final"))
    assert.equal("failed", exec.status)
    local by, e = rows(env, exec)
    assert.equal("completed", by.s1.status)
    assert.equal("failed", e.status)
    assert.matches("^the database refused the execution's result %(.*spec_no_final", e.error)
    assert.is_nil(e.output)
    assert.is_false(e.active)
  end)

  it("a fan-in DAG whose outputs double at every step ends at once, recorded", function()
    local env = open(url)
    local steps = {}
    for i = 1, 26 do
      local deps = {}
      for j = 1, i - 1 do deps[j] = "s" .. j end
      steps[i] = { id = "s" .. i, agent = "echo", dependencies = deps }
    end
    local t0 = require("chorus.sched").now()
    local exec = run(env, h.flat("parallel", steps, { parallel_limit = 2 }), { pad = ("x"):rep(200) })
    assert.equal("failed", exec.status)
    assert.is_true(require("chorus.sched").now() - t0 < 10000)
    local _, e = rows(env, exec)
    assert.equal("failed", e.status)
    assert.matches("settings.max_", e.error)
  end)

  describe("the API in PostgreSQL mode", function()
    local env, key
    local function call(method, path, body, headers)
      local p, q = path:match("^([^?]*)%??(.*)$")
      local hdrs = { authorization = "Bearer " .. key, ["content-type"] = "application/json" }
      for k, v in pairs(headers or {}) do hdrs[k] = v end
      local status, _, rb = env.app:handle({ method = method, path = p, query = q, headers = hdrs, body = body or "" })
      return status, json.decode(rb)
    end

    setup(function()
      env = open(url)
      local svc = { engine = env.engine, store = env.store, runner = env.node,
        auth = auth.new({ store = env.store, ttl_ms = 0 }) }
      env.app = api.new(svc)
      local k
      key, k = auth.generate()
      assert(env.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t", user_id = "u", role = "admin" }))
      local doc = h.flat("sequential", { { id = "s", agent = "echo" } })
      doc.name = "nulls"
      assert.equal(201, (call("POST", "/api/v1/orchestrations/configs", json.encode(doc))))
    end)

    it("NUL in a body is a 400, not a 503 with the database's message", function()
      local status, body = call("POST", "/api/v1/orchestrations/execute/nulls", '{"input": {"job": "A\\u0000B"}}')
      assert.equal(400, status)
      assert.equal("invalid_json", body.error.code)
      assert.matches("NUL", body.error.message)
      status = call("POST", "/api/v1/orchestrations/configs",
        '{"name": "n2", "description": "x\\u0000", "strategy": "sequential", "steps": [{"id": "s", "agent": "echo"}]}')
      assert.equal(400, status)
    end)

    it("NUL or malformed bytes in a query string or a path are a 400", function()
      assert.equal(400, (call("GET", "/api/v1/orchestrations/executions?config=%00")))
      assert.equal(400, (call("GET", "/api/v1/orchestrations/executions?config=%FF")))
      assert.equal(400, (call("GET", "/api/v1/orchestrations/configs/a%00b")))
      assert.equal(400, (call("GET", "/api/v1/orchestrations/configs/%C3")))
    end)

    it("an Idempotency-Key that is not UTF-8 text is a 400", function()
      assert.equal(400, (call("POST", "/api/v1/orchestrations/execute/nulls", "{}", { ["idempotency-key"] = "k\255" })))
      assert.equal(400, (call("POST", "/api/v1/orchestrations/execute/nulls", "{}", { ["idempotency-key"] = "k\0" })))
      assert.equal(202, (call("POST", "/api/v1/orchestrations/execute/nulls", "{}", { ["idempotency-key"] = "k-é" })))
    end)
  end)
end)
