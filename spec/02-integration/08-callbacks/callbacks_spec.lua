-- Webhooks: the outbox row written with the terminal status is delivered
-- with an HMAC signature, retried with backoff, given up after
-- max_attempts, and delivered once even with two deliverers. #postgres
local h = require "spec.helpers"
local pg = require "chorus.db.pg"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"
local http = require "chorus.http.server"
local callbacks = require "chorus.run.callbacks"
local pgstore = require "chorus.store.pg"
local node_mod = require "chorus.run.node"

-- The receiver runs on loopback, which webhooks may not reach unless
-- allowed (SSRF): these deliverers allow it.
local LOOPBACK = callbacks.policy("127.0.0.1")

describe("webhook callbacks #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  local received, fail_first, srv = {}, 0, nil
  setup(function()
    srv = assert(http.listen({ port = 0 }, function(req)
      received[#received + 1] = req
      if req.path == "/always-500" then return 500, nil, "nope" end
      if #received <= fail_first then return 503, nil, "not yet" end
      return 204
    end))
  end)
  teardown(function() srv:close({ grace_ms = 100 }) end)

  local function run_execution(url, hook)
    local pool = pg.pool(url, { size = 4 })
    local store = pgstore.new({ pool = pool })
    local engine = h.engine({ store = store })
    local node = node_mod.new({ engine = engine, pool = pool, claim = false })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo", params = { output = { v = 1 } } } },
      { callback_url = hook })))
    local _, exec = node:submit(cfg, {}, {})
    exec:wait()
    return exec, pool
  end

  it("delivers a signed payload, retrying with backoff until a 2xx", function()
    received, fail_first = {}, 2
    local url = h.fresh_db("hooks")
    local exec, pool = run_execution(url, ("http://127.0.0.1:%d/hook"):format(srv.port))
    local d = callbacks.deliverer(pool, { policy = LOOPBACK, secret = "s3cret", base_backoff_ms = 20, poll_ms = 10 }):run()
    assert.is_true(h.wait_until(function()
      local r = pool:query("SELECT status FROM orchestration_callbacks")
      return r and r.rows[1] and r.rows[1].status == "delivered"
    end, 5000))
    d:stop()
    assert.equal(3, #received)
    local r = assert(pool:query("SELECT attempts, last_status_code, delivered_at IS NOT NULL AS done FROM orchestration_callbacks"))
    assert.equal(3, r.rows[1].attempts)
    assert.equal(204, r.rows[1].last_status_code)
    local last = received[3]
    assert.equal("POST", last.method)
    assert.equal("execution.completed", last.headers["x-chorus-event"])
    local body = json.decode(last.body)
    assert.equal(exec.trace_id, body.trace_id)
    assert.same({ v = 1 }, body.output)
    local ts = last.headers["x-chorus-timestamp"]
    assert.equal("sha256=" .. native.hmac_sha256("s3cret", ts .. "." .. last.body), last.headers["x-chorus-signature"])
    -- every attempt carries the same delivery id
    assert.equal(received[1].headers["x-chorus-delivery"], last.headers["x-chorus-delivery"])
    pool:close()
  end)

  it("gives up after max_attempts and records the last error", function()
    received, fail_first = {}, 0
    local url = h.fresh_db("hooks_fail")
    local _, pool = run_execution(url, ("http://127.0.0.1:%d/always-500"):format(srv.port))
    local d = callbacks.deliverer(pool, { policy = LOOPBACK, base_backoff_ms = 10, poll_ms = 10, max_attempts = 3 }):run()
    assert.is_true(h.wait_until(function()
      local r = pool:query("SELECT status FROM orchestration_callbacks")
      return r and r.rows[1] and r.rows[1].status == "failed"
    end, 5000))
    d:stop()
    local r = assert(pool:query("SELECT attempts, last_error, last_status_code FROM orchestration_callbacks"))
    assert.equal(3, r.rows[1].attempts)
    assert.equal("HTTP 500", r.rows[1].last_error)
    assert.equal(500, r.rows[1].last_status_code)
    assert.is_nil(received[1].headers["x-chorus-signature"]) -- no secret configured
    pool:close()
  end)

  it("gives up at once on an address the policy refuses, literal or resolved", function()
    received, fail_first = {}, 0
    local hosts = { "127.0.0.1" }
    -- a name only the connection finds internal: this machine's own, when
    -- it resolves to one of its addresses (it does on most machines)
    local _, out = h.sh("hostname")
    local name = out:gsub("%s+$", "")
    local _, _, kind = require("chorus.http.client").request({ url = ("http://%s:%d/x"):format(name, srv.port),
      deny_internal = true, timeout_ms = 2000 })
    if kind == "blocked address" and callbacks.check_url("http://" .. name .. "/", callbacks.policy("")) then
      hosts[2] = name
    end
    for _, host in ipairs(hosts) do
      local url = h.fresh_db("hooks_refused")
      local _, pool = run_execution(url, ("http://%s:%d/hook"):format(host, srv.port))
      local d = callbacks.deliverer(pool, { policy = callbacks.policy(""), base_backoff_ms = 10, poll_ms = 10,
        max_attempts = 5 }):run()
      assert.is_true(h.wait_until(function()
        local r = pool:query("SELECT status FROM orchestration_callbacks")
        return r and r.rows[1] and r.rows[1].status == "failed"
      end, 5000), host)
      d:stop()
      local r = assert(pool:query("SELECT attempts, last_error FROM orchestration_callbacks"))
      assert.equal(1, r.rows[1].attempts, host)
      assert.matches("internal address", r.rows[1].last_error)
      pool:close()
    end
    assert.equal(0, #received)
  end)

  it("the execute request's own callback_url goes into the outbox beside the config's, and survives in the row", function()
    received, fail_first = {}, 0
    local url = h.fresh_db("hooks_request")
    local pool = pg.pool(url, { size = 4 })
    local store = pgstore.new({ pool = pool })
    local engine = h.engine({ store = store })
    local node = node_mod.new({ engine = engine, pool = pool, claim = false })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } },
      { callback_url = ("http://127.0.0.1:%d/config-hook"):format(srv.port) })))
    local mine = ("http://127.0.0.1:%d/request-hook"):format(srv.port)
    local _, exec = node:submit(cfg, {}, { callback_url = mine, session_id = "s-1" })
    exec:wait()
    local row = assert(pool:query("SELECT callback_url, session_id FROM orchestration_executions")).rows[1]
    assert.equal(mine, row.callback_url)
    assert.equal("s-1", row.session_id)
    local d = callbacks.deliverer(pool, { policy = LOOPBACK, poll_ms = 5 }):run()
    assert.is_true(h.wait_until(function()
      local r = pool:query("SELECT count(*) AS n FROM orchestration_callbacks WHERE status = 'delivered'")
      return r and r.rows[1].n == 2
    end, 5000))
    d:stop()
    local paths = {}
    for _, rq in ipairs(received) do paths[rq.path] = true end
    assert.same({ ["/config-hook"] = true, ["/request-hook"] = true }, paths)
    pool:close()
  end)

  it("two deliverers deliver each callback once", function()
    received, fail_first = {}, 0
    local url = h.fresh_db("hooks_two")
    local pool = pg.pool(url, { size = 6 })
    local store = pgstore.new({ pool = pool })
    local engine = h.engine({ store = store })
    local node = node_mod.new({ engine = engine, pool = pool, claim = false })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } },
      { callback_url = ("http://127.0.0.1:%d/hook"):format(srv.port) })))
    for _ = 1, 30 do
      local _, exec = node:submit(cfg, {}, {})
      exec:wait()
    end
    local d1 = callbacks.deliverer(pool, { policy = LOOPBACK, poll_ms = 5, batch = 3 }):run()
    local d2 = callbacks.deliverer(pool, { policy = LOOPBACK, poll_ms = 5, batch = 3 }):run()
    assert.is_true(h.wait_until(function()
      local r = pool:query("SELECT count(*) AS n FROM orchestration_callbacks WHERE status = 'delivered'")
      return r and r.rows[1].n == 30
    end, 10000))
    d1:stop()
    d2:stop()
    sched.sleep(50)
    assert.equal(30, #received)
    local ids = {}
    for _, rq in ipairs(received) do
      local id = rq.headers["x-chorus-delivery"]
      assert.is_nil(ids[id], "delivered twice: " .. id)
      ids[id] = true
    end
    pool:close()
  end)
end)
