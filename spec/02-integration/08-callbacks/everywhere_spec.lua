-- Webhooks everywhere: in memory mode too, the execute request's own
-- callback_url as well as the config's, and never to an internal
-- address unless CHORUS_WEBHOOK_ALLOW says so (SSRF).
local h = require "spec.helpers"
local json = require "chorus.json"
local http = require "chorus.http.server"
local client = require "chorus.http.client"
local callbacks = require "chorus.run.callbacks"

describe("webhooks everywhere", function()
  local received, srv = {}, nil
  setup(function()
    srv = assert(http.listen({ port = 0 }, function(req)
      received[#received + 1] = req
      return 204
    end))
  end)
  teardown(function() srv:close({ grace_ms = 100 }) end)

  local function hook(path) return ("http://127.0.0.1:%d/%s"):format(srv.port, path) end

  local function serve(env)
    local log = os.tmpname()
    local pid = h.spawn(("env %s %s serve --listen 127.0.0.1:0 --no-auth"):format(env or "", h.binary), log)
    local port
    assert(h.wait_until(function()
      port = tonumber(table.concat(h.read_lines(log), "\n"):match("listening on 127%.0%.0%.1:(%d+)"))
      return port ~= nil or not h.alive(pid)
    end, 10000), "serve did not start")
    assert(port, table.concat(h.read_lines(log), "\n"))
    return { pid = pid, base = "http://127.0.0.1:" .. port, log = log }
  end

  local function execute(s, body)
    local res = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/execute",
      headers = { ["content-type"] = "application/json" }, body = json.encode(body), timeout_ms = 5000 }))
    return res.status, json.decode(res.body)
  end

  local function wait_for(n)
    return h.wait_until(function() return #received >= n end, 10000)
  end

  it("memory mode delivers the config's and the request's webhooks, signed", function()
    received = {}
    local s = serve("CHORUS_WEBHOOK_ALLOW=127.0.0.1 CHORUS_CALLBACK_SECRET=topsecret")
    local status, r = execute(s, {
      config = h.flat("sequential", { { id = "a", agent = "echo", params = { output = { ok = 1 } } } },
        { callback_url = hook("from-config") }),
      callback_url = hook("from-request"), session_id = "chat-7" })
    assert.equal(202, status)
    assert.is_true(wait_for(2), "webhooks not received")
    local paths = {}
    for _, req in ipairs(received) do
      paths[req.path] = json.decode(req.body)
      local sig = callbacks.sign("topsecret", req.headers["x-chorus-timestamp"], req.body)
      assert.equal(sig, req.headers["x-chorus-signature"])
      assert.equal("execution.completed", req.headers["x-chorus-event"])
    end
    assert.equal(r.trace_id, paths["/from-config"].trace_id)
    assert.same({ ok = 1 }, paths["/from-request"].output)
    assert.equal("chat-7", paths["/from-request"].session_id)
    h.kill(s.pid)
    assert.is_true(h.wait_exit(s.pid, 10000))
  end)

  it("refuses an internal address unless CHORUS_WEBHOOK_ALLOW lists it, and says so", function()
    received = {}
    local s = serve()
    -- a literal internal address in the request: a 422 at once
    local status, body = execute(s, { config = h.flat("sequential", { { id = "a", agent = "echo" } }),
      callback_url = hook("nope") })
    assert.equal(422, status)
    assert.equal("callback_url", body.error.details[1].path)
    assert.matches("internal address; allow it with CHORUS_WEBHOOK_ALLOW", body.error.details[1].message)
    -- in a config: the delivery is refused, logged, and nothing is sent
    status = execute(s, { config = h.flat("sequential", { { id = "a", agent = "echo" } },
      { callback_url = hook("from-config") }) })
    assert.equal(202, status)
    assert.is_true(h.wait_until(function()
      return table.concat(h.read_lines(s.log), "\n"):find("giving up on " .. hook("from-config"), 1, true) ~= nil
    end, 5000), table.concat(h.read_lines(s.log), "\n"))
    assert.equal(0, #received)
    h.kill(s.pid)
    assert.is_true(h.wait_exit(s.pid, 10000))
  end)

  it("checks the address actually connected to: a name that resolves inside is blocked", function()
    local res, err, kind = client.request({ url = ("http://localhost:%d/x"):format(srv.port), deny_internal = true })
    assert.is_nil(res)
    assert.equal("blocked address", kind)
    assert.matches("refused to connect to [%d%.:]+, an internal address", err)
    res = assert(client.request({ url = ("http://localhost:%d/x"):format(srv.port), deny_internal = true,
      allow = { "127.0.0.0/8" } }))
    assert.equal(204, res.status)
    assert.is_nil(callbacks.check_url("http://localhost:1/x", callbacks.policy("")))
    assert.is_true(callbacks.check_url("http://localhost:1/x", callbacks.policy("localhost")))
    assert.is_nil(callbacks.check_url("http://[::1]:1/x", callbacks.policy("10.0.0.0/8")))
    assert.is_true(callbacks.check_url("http://10.2.3.4/x", callbacks.policy("10.0.0.0/8")))
    assert.is_true(callbacks.check_url("https://hooks.example.com/x", callbacks.policy("")))
    assert.is_nil(callbacks.check_url("ftp://x/y", callbacks.policy("*")))
  end)

  it("chorus run delivers its webhook before it exits", function()
    received = {}
    local dir = h.tmpdir()
    local cfg = dir .. "/cfg.json"
    h.write(cfg, json.encode(h.flat("sequential", { { id = "a", agent = "echo" } }, { callback_url = hook("run") })))
    local job = require("spec.support.clients")
    local code = job.run(("CHORUS_WEBHOOK_ALLOW=127.0.0.1 %s run %s -q"):format(h.binary, cfg), 20000)
    assert.equal(0, code)
    assert.equal(1, #received)
    assert.equal("/run", received[1].path)
  end)
end)
