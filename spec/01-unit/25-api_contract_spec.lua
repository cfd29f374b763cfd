-- The pieces of the plan's API contract that need no server: times as
-- RFC 3339 (chorus.rfc3339), records of one shape (chorus.api.present),
-- empty arrays read back as arrays (chorus.json), the WebSocket paths, and
-- the request fields (is_global, session_id from the input). The whole
-- contract over real servers: spec/02-integration/07-serve/contract_spec.lua.
local h = require "spec.helpers"
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local json = require "chorus.json"
local memory = require "chorus.store.memory"
local present = require "chorus.api.present"
local rfc3339 = require "chorus.rfc3339"
local runner_mod = require "chorus.run.memory"

describe("chorus.rfc3339", function()
  it("writes UTC with milliseconds", function()
    assert.equal("1970-01-01T00:00:00.000Z", rfc3339.format(0))
    assert.equal("2000-02-29T00:00:00.000Z", rfc3339.format(951782400))
    assert.equal("2026-12-03T10:15:30.123Z", rfc3339.format(1796292930.123))
    assert.equal("1969-12-31T23:59:59.000Z", rfc3339.format(-1))
    assert.equal("2100-03-01T00:00:00.000Z", rfc3339.format(4107542400)) -- 2100 is no leap year
  end)

  it("rounds to the millisecond, carrying into the second, minute, day and year", function()
    assert.equal("2026-01-01T00:00:00.000Z", rfc3339.format(1767225599.9996))
    assert.equal("2026-01-01T00:00:00.001Z", rfc3339.format(1767225600.0006))
    assert.equal("2025-12-31T23:59:59.999Z", rfc3339.format(1767225599.9994))
  end)

  it("reads back as the same instant (the API's own parser), over four centuries", function()
    local rng = 12345
    for _ = 1, 2000 do
      rng = (rng * 1103515245 + 12345) % 2147483648
      local t = math.floor((rng / 2147483648) * 12.6e9 - 6.3e9) + (rng % 1000) / 1000
      local s = rfc3339.format(t)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", s)
      assert.near(t, api.parse_time(s), 0.0006, s)
    end
  end)
end)

describe("chorus.json reads [] as an array", function()
  it("keeps empty arrays empty arrays, wherever they are", function()
    assert.equal("[]", json.encode(json.decode("[]")))
    assert.equal('{"a":[],"b":{}}', json.encode(json.decode('{"a":[],"b":{}}')))
    assert.equal('{"a":[[],[1]],"b":[{"c":[]}]}', json.encode(json.decode('{"a":[ [ ], [1]],"b":[{"c":[\n]}]}')))
    assert.is_true(json.is_array(json.decode('{"x":[]}').x))
    assert.equal(getmetatable(json.array()), getmetatable(json.decode('{"x":[]}').x))
    assert.is_nil(getmetatable(json.decode('{"x":{}}').x))
  end)

  it("leaves strings alone, escaped quotes and backslashes included", function()
    local v = json.decode('{"s":"x [] y","t":"q\\"[]","u":"\\\\","l":[]}')
    assert.equal("x [] y", v.s)
    assert.equal('q"[]', v.t)
    assert.equal("\\", v.u)
    assert.same(json.array(), v.l)
    assert.equal("string", type(json.decode('"[]"')))
  end)

  it("reports a malformed text where the original is wrong", function()
    local v, err = json.decode('{"a": [] "b"}')
    assert.is_nil(v)
    assert.matches("at character 10", err)
    assert.is_nil((json.decode('{"a": [], "s": "unterminated')))
    assert.is_nil((json.decode(("["):rep(json.MAX_DEPTH + 5) .. ("]"):rep(json.MAX_DEPTH + 5))))
  end)
end)

describe("chorus.api.present", function()
  local function keys(t)
    local out = {}
    for k in pairs(t) do out[#out + 1] = k end
    table.sort(out)
    return out
  end
  local function sorted(list)
    local out = {}
    for i, k in ipairs(list) do out[i] = k end
    table.sort(out)
    return out
  end

  it("gives every field of a shape, null when unknown, times as RFC 3339", function()
    local cfg = present.config({ id = "i", name = "n", strategy = "sequential", steps = { steps = { {}, {} } },
      is_active = true, version = 1, created_at = 0, updated_at = 1.5 })
    assert.same(sorted(present.FIELDS.Config), keys(cfg))
    assert.equal(json.null, cfg.description)
    assert.equal(2, cfg.steps_count)
    assert.is_true(cfg.is_global)
    assert.same({}, cfg.metadata)
    assert.equal("1970-01-01T00:00:01.500Z", cfg.updated_at)
    local sum = present.summary({ id = "i", trace_id = "t", config = "c", status = "pending", created_at = 0 })
    assert.same(sorted(present.FIELDS.ExecutionSummary), keys(sum))
    assert.same({ latency_ms = json.null, tokens = 0, cost = 0 }, sum.metrics)
    local rec = present.execution({ id = "i", trace_id = "t", config = "c", status = "paused", created_at = 0,
      paused_at = 2, metadata = json.array(), steps = { { id = "a", agent = "echo", status = "pending" } } })
    local all = sorted(present.FIELDS.ExecutionSummary)
    for _, k in ipairs(present.FIELDS.ExecutionExtra) do all[#all + 1] = k end
    table.sort(all)
    assert.same(all, keys(rec))
    assert.equal("1970-01-01T00:00:02.000Z", rec.paused_at)
    assert.equal("{}", json.encode(rec.metadata)) -- an object, even when stored as []
    assert.equal(0, rec.claims)
    assert.same(sorted(present.FIELDS.StepRun), keys(rec.steps[1]))
    assert.is_false(rec.steps[1].cached)
    assert.equal("[]", json.encode(present.execution({ id = "i", steps = {} }).steps))
    local v = present.config_version({ id = "i", version = 1, name = "n", strategy = "s", steps = {}, created_at = 0 })
    assert.same(sorted(present.FIELDS.ConfigVersion), keys(v))
  end)

  -- present.execution works on the store's fresh record in place: the
  -- execution it came from, its input and outputs must not change, and
  -- a record presented twice is the same.
  it("gives a status read its form without changing the execution it reads", function()
    local store = memory.new()
    local engine = assert(require("chorus.engine").new({ store = store }))
    local cfg = assert(engine:validate({ name = "p", strategy = "sequential",
      steps = { { id = "a", agent = "echo" }, { id = "b", agent = "echo", dependencies = { "a" } } } }))
    local exec = engine:execute(cfg, { job = "J", list = json.array() }):wait()
    assert.equal("completed", exec.status)
    local before = json.encode(store:get_record(exec.id))
    local once = present.execution(store:get_record(exec.id))
    assert.equal("string", type(once.created_at))
    assert.equal(json.null, once.steps[1].error)
    assert.equal(before, json.encode(store:get_record(exec.id)), "the execution changed")
    assert.equal("number", type(exec.created_at))
    assert.equal("[]", json.encode(exec.input.list))
    local again = present.execution(store:get_record(exec.id))
    assert.equal(json.encode(once), json.encode(present.execution(again)))
  end)

  it("gives an event its time without changing the engine's event", function()
    local e = { type = "step.status", at = 1796292930.5, seq = 3 }
    local out = present.event(e)
    assert.equal("2026-12-03T10:15:30.500Z", out.at)
    assert.equal(1796292930.5, e.at)
    assert.equal(3, out.seq)
  end)

  it("gives the stats their times", function()
    local st = present.stats({ since = 60, ["until"] = 120, per_minute = { { at = 60, by_status = {} } } })
    assert.equal("1970-01-01T00:01:00.000Z", st.since)
    assert.equal("1970-01-01T00:02:00.000Z", st["until"])
    assert.equal("1970-01-01T00:01:00.000Z", st.per_minute[1].at)
  end)
end)

describe("the plan's request fields", function()
  local svc, admin, op
  local function call(method, path, body, key)
    local p, q = path:match("^([^?]*)%??(.*)$")
    local hd = { ["content-type"] = "application/json", authorization = "Bearer " .. key }
    local status, _, rb = svc.app:handle({ method = method, path = p, query = q, headers = hd,
      body = body and json.encode(body) or "" })
    return status, json.decode(rb)
  end
  setup(function()
    local store = memory.new()
    local engine = h.engine({ store = store })
    svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
      auth = auth.new({ store = store, ttl_ms = 0 }) }
    svc.app = api.new(svc)
    local function key(role)
      local k, rec = auth.generate()
      store:create_key({ prefix = rec.prefix, hash = rec.hash, tenant_id = "t1", user_id = "u-" .. role, role = role })
      return k
    end
    admin, op = key("admin"), key("operator")
  end)

  local CFG = { name = "g", strategy = "sequential", steps = { { id = "a", agent = "echo" } } }

  it("is_global (or global) makes a config every tenant's; only admins may", function()
    local body = json.decode(json.encode(CFG))
    body.is_global = true
    local s, e = call("POST", "/api/v1/orchestrations/configs", body, op)
    assert.equal(403, s)
    assert.matches("is_global", e.error.message)
    local c
    s, c = call("POST", "/api/v1/orchestrations/configs", body, admin)
    assert.equal(201, s)
    assert.is_true(c.is_global)
    assert.equal(json.null, c.tenant_id)
    -- the same value under either name is fine on an update; a change is not
    body.is_global, body.global = true, true
    assert.equal(200, (call("PUT", "/api/v1/orchestrations/configs/g", body, admin)))
    body.is_global, body.global = false, nil
    s, e = call("PUT", "/api/v1/orchestrations/configs/g", body, admin)
    assert.equal(422, s)
    assert.equal("is_global", e.error.details[1].path)
    s, e = call("PATCH", "/api/v1/orchestrations/configs/g", { global = false }, admin)
    assert.equal(422, s)
    assert.equal("global", e.error.details[1].path)
    s, c = call("PATCH", "/api/v1/orchestrations/configs/g", { is_global = true, is_active = false }, admin)
    assert.equal(200, s)
    assert.is_false(c.is_active)
  end)

  it("takes session_id from the input when the request has none (where the plan's clients put it)", function()
    assert.equal(201, (call("POST", "/api/v1/orchestrations/configs", { name = "s", strategy = "sequential",
      steps = { { id = "a", agent = "echo" } } }, op)))
    local _, r1 = call("POST", "/api/v1/orchestrations/execute/s", { input = { session_id = "from-input" } }, op)
    local _, r2 = call("POST", "/api/v1/orchestrations/execute/s", { input = { session_id = "in" }, session_id = "top" }, op)
    local _, r3 = call("POST", "/api/v1/orchestrations/execute/s", { input = { session_id = 42 } }, op)
    for _, r in ipairs({ r1, r2, r3 }) do svc.store:get_execution(r.trace_id):wait() end
    local _, a = call("GET", "/api/v1/orchestrations/status/" .. r1.trace_id, nil, op)
    local _, b = call("GET", "/api/v1/orchestrations/status/" .. r2.trace_id, nil, op)
    local _, c = call("GET", "/api/v1/orchestrations/status/" .. r3.trace_id, nil, op)
    assert.equal("from-input", a.session_id)
    assert.equal("from-input", a.input.session_id) -- the input keeps it
    assert.equal("top", b.session_id)
    assert.equal(json.null, c.session_id) -- not a string: just input
    local _, l = call("GET", "/api/v1/orchestrations/executions?session_id=from-input", nil, op)
    assert.equal(1, l.total)
  end)

  it("serves the WebSocket execute route at the plan's path too, with ?token=", function()
    local function upgrade(query, path)
      local s, _, body = svc.app:handle({ method = "GET", path = path or "/api/v1/orchestrations/ws/execute/g",
        query = query, headers = {}, is_websocket = true,
        websocket = function() return nil, "not a WebSocket handshake" end })
      return s, body and json.decode(body)
    end
    assert.equal(401, (upgrade("token=nope")))
    assert.equal(401, (upgrade("token=chk_" .. ("0"):rep(64))))
    assert.equal(401, (upgrade("")))
    -- a good key gets as far as the upgrade (which this fake refuses)
    local s, e = upgrade("token=" .. op)
    assert.equal(400, s)
    assert.equal("bad_request", e.error.code)
    assert.equal(400, (upgrade("api_key=" .. op)))
    assert.equal(400, (upgrade("token=" .. op, "/ws/execute/g")))
    -- ?token= is for WebSocket routes only: REST wants the header
    local rs = svc.app:handle({ method = "GET", path = "/api/v1/orchestrations/configs", query = "token=" .. op,
      headers = {} })
    assert.equal(401, rs)
  end)
end)
