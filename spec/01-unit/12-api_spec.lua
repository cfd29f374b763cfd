-- The REST API as a function (chorus.api), over the memory store and the
-- in-process runner: routes, status codes, the error shape, auth, scoping.
-- spec/02-integration drives the same API through a real server process.
local h = require "spec.helpers"
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local json = require "chorus.json"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local sched = require "chorus.sched"

local function new_service()
  local store = memory.new()
  local engine = h.engine({ store = store })
  local svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
    auth = auth.new({ store = store, ttl_ms = 0 }) }
  svc.app = api.new(svc)
  return svc
end

local function key_for(svc, tenant, user, role)
  local key, k = auth.generate()
  svc.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = tenant, user_id = user, role = role })
  return key
end

-- call(svc, method, path, body, key, headers) -> status, decoded body, headers
local function call(svc, method, path, body_v, key, headers)
  local path_only, query = path:match("^([^?]*)%??(.*)$")
  local hdrs = { ["content-type"] = "application/json" }
  if key then hdrs.authorization = "Bearer " .. key end
  for k, v in pairs(headers or {}) do hdrs[k] = v or nil end
  local body = body_v
  if type(body_v) == "table" then body = json.encode(body_v) end
  local status, rh, rb = svc.app:handle({ method = method, path = path_only, query = query, headers = hdrs, body = body or "" })
  local decoded = rb ~= "" and json.decode(rb) or nil
  return status, decoded, rh, rb
end

local CONFIG = { name = "triage", strategy = "parallel", steps = { steps = {
  { id = "a", agent = "echo", params = { output = { ok = true } } },
  { id = "b", agent = "echo", dependencies = { "a" } } } } }

local SLOW = { name = "slow", strategy = "sequential", steps = {
  { id = "wait", agent = "delay", params = { ms = 150, output = "late" } },
  { id = "gate", agent = "echo", approval = true, params = { output = "approved" } } } }

describe("API", function()
  local svc, admin, op, viewer, other

  before_each(function()
    svc = new_service()
    admin = key_for(svc, "t1", "root", "admin")
    op = key_for(svc, "t1", "alice", "operator")
    viewer = key_for(svc, "t1", "victor", "viewer")
    other = key_for(svc, "t2", "mallory", "operator")
  end)

  describe("configs", function()
    it("creates (201 + Location), refuses a duplicate (409), reads by id and by name", function()
      local s, c, hd = call(svc, "POST", "/api/v1/orchestrations/configs", CONFIG, op)
      assert.equal(201, s)
      assert.equal("/api/v1/orchestrations/configs/" .. c.id, hd.location)
      assert.equal(1, c.version)
      assert.equal("t1", c.tenant_id)
      s = call(svc, "POST", "/api/v1/orchestrations/configs", CONFIG, op)
      assert.equal(409, s)
      local s2, byname = call(svc, "GET", "/api/v1/orchestrations/configs/triage", nil, viewer)
      assert.equal(200, s2)
      assert.equal(c.id, byname.id)
      assert.equal(200, (call(svc, "GET", "/api/v1/orchestrations/configs/" .. c.id, nil, viewer)))
    end)

    it("422 lists every validation error with its path", function()
      local s, e = call(svc, "POST", "/api/v1/orchestrations/configs", { name = "bad", strategy = "parallel", steps = {
        { id = "a", agent = "nope", dependencies = { "b" } }, { id = "b", agent = "echo", dependencies = { "a" } },
        { id = "c", agent = "echo", timeout_ms = "soon" } } }, op)
      assert.equal(422, s)
      assert.equal("validation_failed", e.error.code)
      local paths = {}
      for _, d in ipairs(e.error.details) do paths[d.path] = d.message end
      assert.matches("unknown agent", paths["steps[0].agent"])
      assert.matches("must be an integer", paths["steps[2].timeout_ms"])
      assert.matches("cycle", paths["steps[0].dependencies"])
    end)

    it("lists with filters and pagination, updates with a version bump, deletes softly", function()
      for i = 1, 3 do
        local cfg = json.decode(json.encode(CONFIG))
        cfg.name = "c" .. i
        assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", cfg, op)))
      end
      local s, l = call(svc, "GET", "/api/v1/orchestrations/configs?strategy=parallel&limit=2&offset=1", nil, viewer)
      assert.equal(200, s)
      assert.equal(3, l.total)
      assert.equal(2, #l.items)
      assert.equal("c2", l.items[1].name)
      local upd = json.decode(json.encode(CONFIG))
      upd.name, upd.description = "c1", "changed"
      local s2, u = call(svc, "PUT", "/api/v1/orchestrations/configs/c1", upd, op)
      assert.equal(200, s2)
      assert.equal(2, u.version)
      local s3, v1 = call(svc, "GET", "/api/v1/orchestrations/configs/c1/versions/1", nil, viewer)
      assert.equal(200, s3)
      assert.equal(json.null, v1.description) -- every field is there, null when unknown
      assert.equal(204, (call(svc, "DELETE", "/api/v1/orchestrations/configs/c1", nil, op)))
      assert.equal(404, (call(svc, "GET", "/api/v1/orchestrations/configs/c1", nil, viewer)))
      assert.equal(400, (call(svc, "GET", "/api/v1/orchestrations/configs?limit=0", nil, viewer)))
      assert.equal(400, (call(svc, "GET", "/api/v1/orchestrations/configs?limit=abc", nil, viewer)))
      assert.equal(400, (call(svc, "GET", "/api/v1/orchestrations/configs?active=maybe", nil, viewer)))
    end)

    it("only admins create or change global configs", function()
      local g = json.decode(json.encode(CONFIG))
      g.global = true
      assert.equal(403, (call(svc, "POST", "/api/v1/orchestrations/configs", g, op)))
      local s, c = call(svc, "POST", "/api/v1/orchestrations/configs", g, admin)
      assert.equal(201, s)
      assert.is_true(c.is_global)
      assert.equal(200, (call(svc, "GET", "/api/v1/orchestrations/configs/triage", nil, other)))
      assert.equal(403, (call(svc, "DELETE", "/api/v1/orchestrations/configs/triage", nil, other)))
    end)
  end)

  describe("executions", function()
    it("execute answers 202 at once while the execution runs, then status shows every step", function()
      assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", SLOW, op)))
      local t0 = sched.now()
      local s, r, hd = call(svc, "POST", "/api/v1/orchestrations/execute/slow", { input = { job = "J" } }, op)
      assert.is_true(sched.now() - t0 < 100) -- the execution itself takes 150 ms
      assert.equal(202, s)
      assert.is_string(r.trace_id)
      assert.equal(hd.location, r.status_url)
      local _, st = call(svc, "GET", r.status_url, nil, op)
      assert.is_true(st.status == "pending" or st.status == "running")
      assert.is_true(h.wait_until(function()
        local _, x = call(svc, "GET", r.status_url, nil, op)
        return x.status == "paused"
      end, 2000))
      local sa = call(svc, "POST", "/api/v1/orchestrations/executions/" .. r.trace_id .. "/steps/gate/approve", nil, op)
      assert.equal(200, sa)
      assert.is_true(h.wait_until(function()
        local _, x = call(svc, "GET", r.status_url, nil, op)
        return x.status == "completed"
      end, 2000))
      local _, done = call(svc, "GET", r.status_url, nil, op)
      assert.equal("approved", done.output)
      assert.equal(2, #done.steps)
      assert.equal("alice", done.steps[2].approval.by)
    end)

    it("runs an inline config and honours Idempotency-Key", function()
      local s, r = call(svc, "POST", "/api/v1/orchestrations/execute", { config = CONFIG, input = { n = 1 } }, op,
        { ["idempotency-key"] = "abc" })
      assert.equal(202, s)
      local s2, r2 = call(svc, "POST", "/api/v1/orchestrations/execute", { config = CONFIG, input = { n = 1 } }, op,
        { ["idempotency-key"] = "abc" })
      assert.equal(200, s2)
      assert.equal(r.trace_id, r2.trace_id)
      assert.is_true(r2.replayed)
      local s3, e = call(svc, "POST", "/api/v1/orchestrations/execute", { config = { name = "x" } }, op)
      assert.equal(422, s3)
      assert.equal("config.strategy", e.error.details[1].path == "config.strategy" and "config.strategy" or e.error.details[2].path)
    end)

    it("pause, resume, cancel; wrong state is 409; unknown is 404; bad id is 400", function()
      assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", SLOW, op)))
      local _, r = call(svc, "POST", "/api/v1/orchestrations/execute/slow", nil, op)
      local base = "/api/v1/orchestrations/executions/" .. r.trace_id
      assert.equal(200, (call(svc, "POST", base .. "/pause", nil, op)))
      local _, st = call(svc, "GET", r.status_url, nil, op)
      assert.equal("paused", st.status)
      assert.equal(200, (call(svc, "POST", base .. "/resume", nil, op)))
      local s, e = call(svc, "POST", base .. "/resume", nil, op)
      assert.equal(409, s)
      assert.equal("invalid_state", e.error.code)
      assert.equal(200, (call(svc, "POST", base .. "/cancel", nil, op)))
      assert.is_true(h.wait_until(function()
        local _, x = call(svc, "GET", r.status_url, nil, op)
        return x.status == "cancelled"
      end, 1000))
      assert.equal(409, (call(svc, "POST", base .. "/cancel", nil, op)))
      assert.equal(404, (call(svc, "POST", "/api/v1/orchestrations/executions/00000000-0000-4000-8000-000000000000/cancel", nil, op)))
      assert.equal(400, (call(svc, "POST", "/api/v1/orchestrations/executions/not-a-uuid/cancel", nil, op)))
      assert.equal(400, (call(svc, "GET", "/api/v1/orchestrations/status/'; DROP TABLE x;--", nil, op)))
    end)

    it("lists executions newest first with filters; users see only their own", function()
      assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", CONFIG, op)))
      for _ = 1, 3 do call(svc, "POST", "/api/v1/orchestrations/execute/triage", nil, op) end
      call(svc, "POST", "/api/v1/orchestrations/execute/triage", nil, admin)
      sched.sleep(20)
      local _, l = call(svc, "GET", "/api/v1/orchestrations/executions?config=triage&status=completed&limit=2", nil, op)
      assert.equal(3, l.total)
      assert.equal(2, #l.items)
      local _, all = call(svc, "GET", "/api/v1/orchestrations/executions", nil, admin)
      assert.equal(4, all.total)
      local _, none = call(svc, "GET", "/api/v1/orchestrations/executions", nil, other)
      assert.equal(0, none.total)
      assert.equal(400, (call(svc, "GET", "/api/v1/orchestrations/executions?status=bogus", nil, op)))
    end)
  end)

  describe("bad input", function()
    local corpus = {
      { "invalid JSON", "POST", "/api/v1/orchestrations/configs", "{ nope", nil, 400, "invalid_json" },
      { "invalid UTF-8", "POST", "/api/v1/orchestrations/configs", '{"name":"\255"}', nil, 400, "invalid_json" },
      { "array body", "POST", "/api/v1/orchestrations/configs", "[1,2]", nil, 422, "validation_failed" },
      { "string body", "POST", "/api/v1/orchestrations/configs", '"x"', nil, 422, "validation_failed" },
      { "wrong content type", "POST", "/api/v1/orchestrations/configs", "{}", { ["content-type"] = "text/plain" }, 415, "unsupported_media_type" },
      { "missing content type", "POST", "/api/v1/orchestrations/configs", "{}", { ["content-type"] = false }, 415, "unsupported_media_type" },
      { "empty body", "POST", "/api/v1/orchestrations/configs", "", nil, 400, "bad_request" },
      { "deep nesting", "POST", "/api/v1/orchestrations/configs", ("["):rep(500) .. ("]"):rep(500), nil, 400, "invalid_json" },
      { "wrong types", "POST", "/api/v1/orchestrations/configs", '{"name":1,"strategy":[],"steps":"x"}', nil, 422, "validation_failed" },
      { "SQL in a name", "POST", "/api/v1/orchestrations/configs", '{"name":"x\'; DROP TABLE y;--","strategy":"parallel","steps":[{"id":"a","agent":"echo"}]}', nil, 422, "validation_failed" },
      { "unknown route", "GET", "/api/v1/nothing", nil, nil, 404, "not_found" },
      { "wrong method", "PATCH", "/api/v1/orchestrations/configs", nil, nil, 405, "method_not_allowed" },
      { "bad escape", "GET", "/api/v1/orchestrations/configs?x=%zz", nil, nil, 400, "bad_request" },
      { "input not an object", "POST", "/api/v1/orchestrations/execute", '{"config":{},"input":[1]}', nil, 422, "validation_failed" },
      { "huge idempotency key", "POST", "/api/v1/orchestrations/execute", '{"config":' .. json.encode(CONFIG) .. '}', { ["idempotency-key"] = ("k"):rep(300) }, 400, "bad_request" },
    }
    for _, c in ipairs(corpus) do
      it(c[1] .. " -> " .. c[6], function()
        local s, e = call(svc, c[2], c[3], c[4], op, c[5])
        assert.equal(c[6], s)
        assert.equal(c[7], e.error.code)
        assert.is_string(e.error.message)
        assert.is_table(e.error.details)
      end)
    end
  end)

  describe("auth", function()
    it("401 without a key or with a bad one; 403 for a role that may not", function()
      local s, e, hd = call(svc, "GET", "/api/v1/orchestrations/configs", nil, nil)
      assert.equal(401, s)
      assert.equal("Bearer", hd["www-authenticate"])
      assert.equal("unauthorized", e.error.code)
      assert.equal(401, (call(svc, "GET", "/api/v1/orchestrations/configs", nil, "chk_" .. ("0"):rep(64))))
      assert.equal(401, (call(svc, "GET", "/api/v1/orchestrations/configs", nil, "garbage")))
      assert.equal(403, (call(svc, "POST", "/api/v1/orchestrations/configs", CONFIG, viewer)))
      assert.equal(403, (call(svc, "POST", "/api/v1/registry/reload", nil, op)))
      assert.equal(200, (call(svc, "POST", "/api/v1/registry/reload", nil, admin)))
      assert.equal(200, (call(svc, "GET", "/healthz")))
    end)

    it("a revoked key stops working", function()
      local key, k = auth.generate()
      svc.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t1", user_id = "z", role = "viewer" })
      assert.equal(200, (call(svc, "GET", "/api/v1/registry", nil, key)))
      assert.is_true(svc.store:revoke_key(k.prefix))
      assert.equal(401, (call(svc, "GET", "/api/v1/registry", nil, key)))
    end)

    it("no cross-tenant read or write, for every role and endpoint", function()
      -- t2's config and execution, then every t1 role tries to reach them.
      local s, c = call(svc, "POST", "/api/v1/orchestrations/configs", CONFIG, other)
      assert.equal(201, s)
      local _, r = call(svc, "POST", "/api/v1/orchestrations/execute/" .. c.id, nil, other)
      sched.sleep(10)
      local base = "/api/v1/orchestrations"
      for _, key in ipairs({ op, viewer }) do
        assert.equal(404, (call(svc, "GET", base .. "/configs/" .. c.id, nil, key)))
        assert.equal(404, (call(svc, "GET", base .. "/configs/triage", nil, key)))
        local _, l = call(svc, "GET", base .. "/configs", nil, key)
        assert.equal(0, l.total)
        assert.is_true(({ [403] = true, [404] = true })[(call(svc, "PUT", base .. "/configs/" .. c.id, CONFIG, key))])
        assert.is_true(({ [403] = true, [404] = true })[(call(svc, "DELETE", base .. "/configs/" .. c.id, nil, key))])
        assert.is_true(({ [403] = true, [404] = true })[(call(svc, "POST", base .. "/execute/" .. c.id, nil, key))])
        assert.equal(404, (call(svc, "GET", base .. "/status/" .. r.trace_id, nil, key)))
        local _, el = call(svc, "GET", base .. "/executions", nil, key)
        assert.equal(0, el.total)
        assert.is_true(({ [403] = true, [404] = true })[(call(svc, "POST", base .. "/executions/" .. r.trace_id .. "/cancel", nil, key))])
      end
      -- the admin sees everything
      assert.equal(200, (call(svc, "GET", base .. "/status/" .. r.trace_id, nil, admin)))
      assert.equal(200, (call(svc, "GET", base .. "/configs/" .. c.id, nil, admin)))
    end)
  end)
end)
