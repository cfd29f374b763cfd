-- The CLI for a running system against a real `chorus serve` (memory):
-- executions, configs, registry and events as an operator runs them, and
-- every way they fail (unknown trace, bad key, no server, bad flags).
local h = require "spec.helpers"
local srv = require "spec.support.serve"
local client = require "chorus.http.client"
local json = require "chorus.json"

local _ -- what a test does not look at
local sched = require "chorus.sched"

local KEY = "chk_" .. ("c1"):rep(32)

-- esc(s) -> s as a pattern matching itself (trace ids have '-')
local function esc(s) return (s:gsub("%p", "%%%0")) end

local SLOW = { name = "cli-slow", strategy = "sequential", steps = {
  { id = "a", agent = "delay", params = { ms = 600, output = { a = 1 } } },
  { id = "b", agent = "delay", params = { ms = 50, output = { b = 2 } }, dependencies = { "a" } } } }
local GATED = { name = "cli-gated", strategy = "sequential", steps = {
  { id = "prep", agent = "echo" },
  { id = "gate", agent = "echo", approval = true, dependencies = { "prep" }, params = { output = { done = true } } } } }
local FAILING = { name = "cli-failing", strategy = "sequential", steps = { { id = "x", agent = "fail" } } }

describe("chorus CLI against a server", function()
  local s, env, dir

  local function api(method, path, body)
    local res = assert(client.request({ method = method, url = s.base .. path, timeout_ms = 10000,
      headers = { authorization = "Bearer " .. KEY, ["content-type"] = "application/json" },
      body = body and json.encode(body) or nil }))
    return res.status, json.decode(res.body)
  end

  local function execute(name)
    local st, r = api("POST", "/api/v1/orchestrations/execute/" .. name, { input = { job = "J" } })
    assert.equal(202, st)
    return r.trace_id
  end

  local function status_of(trace)
    local _, rec = api("GET", "/api/v1/orchestrations/status/" .. trace)
    return rec.status, rec
  end

  local function wait_status(trace, want)
    assert.is_true(h.wait_until(function() return status_of(trace) == want end, 10000),
      ("%s never became %s (is %s)"):format(trace, want, tostring(status_of(trace))))
  end

  local function chorus(args, extra)
    local e = { CHORUS_SERVER = s.base, CHORUS_API_KEY = KEY }
    for k, v in pairs(extra or {}) do e[k] = v end
    return srv.chorus(args, e)
  end

  local function file(name, doc)
    local path = dir .. "/" .. name
    h.write(path, type(doc) == "string" and doc or json.encode(doc))
    return path
  end

  setup(function()
    dir = h.tmpdir()
    s = srv.start("", { CHORUS_ADMIN_KEY = KEY })
    env = { CHORUS_SERVER = s.base, CHORUS_API_KEY = KEY }
    for _, c in ipairs({ SLOW, GATED, FAILING }) do assert.equal(201, (api("POST", "/api/v1/orchestrations/configs", c))) end
  end)
  teardown(function() if s then srv.stop(s) end end)

  describe("configs", function()
    local base = { name = "cli-apply", description = "made by apply", strategy = "parallel", steps = {
      { id = "one", agent = "echo" }, { id = "two", agent = "echo", dependencies = { "one" } } } }

    it("apply creates, then leaves an unchanged file alone, then updates to a new version", function()
      local f = file("apply.json", base)
      local code, out, err = chorus("configs apply " .. f)
      assert.equal(0, code, err)
      assert.matches("^created config cli%-apply: version 1 %(id [%x%-]+%)\n$", out)
      code, out = chorus("configs apply " .. f)
      assert.equal(0, code)
      assert.equal("config cli-apply unchanged: version 1\n", out)
      local changed = json.decode(json.encode(base))
      changed.steps[2].params = { output = { v = 2 } }
      code, out, err = chorus("configs apply " .. file("apply2.json", changed))
      assert.equal(0, code, err)
      assert.equal("updated config cli-apply: version 1 -> 2\n", out)
      local _, rec = api("GET", "/api/v1/orchestrations/configs/cli-apply")
      assert.equal(2, rec.version)
      assert.same({ v = 2 }, rec.steps.steps[2].params.output)
    end)

    it("diff shows what apply would change (exit 1), nothing when equal (exit 0), all of a new one", function()
      local same = json.decode(json.encode(base))
      same.steps[2].params = { output = { v = 2 } }
      assert.equal(0, (chorus("configs apply " .. file("same.json", same))))
      local code, out = chorus("configs diff " .. file("same.json", same))
      assert.equal(0, code, out)
      assert.equal("", out)
      local other = json.decode(json.encode(same))
      other.description = "changed"
      other.steps[2].params.output.v = 3
      code, out = chorus("configs diff " .. file("other.json", other))
      assert.equal(1, code)
      assert.matches("^%-%-%- cli%-apply version %d %(" .. esc(s.base) .. "%)\n%+%+%+ [^\n]+other%.json\n@@ ", out)
      assert.matches('\n%-  "description": "made by apply",\n%+  "description": "changed",\n', out)
      assert.matches('\n%-%s+"v": 2\n%+%s+"v": 3\n', out)
      local new = json.decode(json.encode(base))
      new.name = "cli-new"
      code, out = chorus("configs diff " .. file("new.json", new))
      assert.equal(1, code)
      assert.matches("^%-%-%- /dev/null\n", out)
      assert.matches('\n%+  "name": "cli%-new",\n', out)
      assert.not_matches("\n[ %-]", out:gsub("^[^\n]*\n[^\n]*\n[^\n]*\n", "")) -- only additions
    end)

    it("show prints the version and the document, --document just the document, --json the record", function()
      local code, out = chorus("configs show cli-slow")
      assert.equal(0, code)
      assert.matches("^config cli%-slow  version 1  active  tenant default\nid [%x%-]+  updated %d%d%d%d%-%d%d%-%d%dT", out)
      local code2, doc = chorus("configs show cli-slow --document")
      assert.equal(0, code2)
      assert.equal(out:match("\n\n(.*)$"), doc)
      local d = json.decode(doc)
      assert.equal("delay", d.steps.steps[1].agent)
      assert.matches('"dependencies": %[%]', doc) -- an empty array stays one
      local _, js = chorus("configs show cli-slow --json")
      assert.equal("cli-slow", json.decode(js).name)
      -- A document from show applies as unchanged.
      local code3, out3 = chorus("configs apply " .. file("shown.json", doc))
      assert.equal(0, code3)
      assert.equal("config cli-slow unchanged: version 1\n", out3)
      code, out = chorus("configs show cli-apply --version 1 --document")
      assert.equal(0, code)
      assert.is_nil(json.decode(out).steps.steps[2].params.output)
    end)

    it("list shows every config in a table, and --json", function()
      local code, out = chorus("configs list")
      assert.equal(0, code)
      assert.matches("^NAME%s+VERSION%s+STRATEGY%s+STEPS%s+ACTIVE%s+TENANT%s+UPDATED\n", out)
      assert.matches("\ncli%-gated%s+1%s+sequential%s+2%s+yes%s+default%s+%d%d%d%d%-", out)
      local _, js = chorus("configs list --json")
      local names = {}
      for _, c in ipairs(json.decode(js).items) do names[c.name] = true end
      assert.is_true(names["cli-slow"] and names["cli-gated"])
    end)

    it("fails clearly: invalid config, unreadable file, unknown config", function()
      local bad = { name = "cli-bad", strategy = "sequential", steps = { { id = "a", agent = "nope" } } }
      local code, out, err = chorus("configs apply " .. file("bad.json", bad))
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("the config is invalid %(HTTP 422%)\n  steps%[0%]%.agent: unknown agent 'nope'", err)
      code, _, err = chorus("configs diff " .. file("bad.json", bad))
      assert.equal(2, code)
      assert.matches("bad%.json: 1 error\n  steps%[0%]%.agent: unknown agent 'nope'", err)
      code, _, err = chorus("configs apply " .. file("broken.json", "{ nope"))
      assert.equal(2, code)
      assert.matches("broken%.json: invalid JSON", err)
      code, _, err = chorus("configs apply " .. dir .. "/missing.json")
      assert.equal(2, code)
      assert.matches("cannot read [^\n]*missing%.json", err)
      code, _, err = chorus("configs show no-such-config")
      assert.equal(1, code)
      assert.matches("chorus configs show: no config 'no%-such%-config' %(HTTP 404%)", err)
    end)
  end)

  describe("executions", function()
    it("list shows them newest first, filtered by config and status, and --json", function()
      local t1 = execute("cli-failing")
      wait_status(t1, "failed")
      local t2 = execute("cli-gated")
      wait_status(t2, "paused")
      local code, out, err = chorus("executions list")
      assert.equal(0, code, err)
      assert.matches("^TRACE%s+CONFIG%s+STATUS%s+CREATED%s+LATENCY%s+TOKENS%s+COST%s+USER\n", out)
      assert.is_true(out:find(t2, 1, true) < out:find(t1, 1, true)) -- newest first
      code, out = chorus("executions list --config cli-failing --status failed")
      assert.equal(0, code)
      assert.matches(esc(t1) .. "  cli%-failing  failed", out)
      assert.is_nil(out:find(t2, 1, true))
      code, out = chorus("executions list --status completed --config cli-failing")
      assert.equal(0, code)
      assert.equal("no executions\n", out)
      local _, js = chorus("executions list --json --limit 1")
      local page = json.decode(js)
      assert.equal(1, #page.items)
      assert.equal(1, page.limit)
      assert.is_true(page.total >= 2)
      local _, _, more = chorus("executions list --limit 1")
      assert.matches("^1 of %d+ executions %(newest first%); %-%-limit N shows more", more)
      chorus("executions reject " .. t2 .. " gate")
    end)

    it("show prints the steps, the error or output, and the approval waiting", function()
      local t = execute("cli-gated")
      wait_status(t, "paused")
      local code, out = chorus("executions show " .. t)
      assert.equal(0, code)
      assert.matches("^cli%-gated paused in [^\n]+%(trace " .. esc(t) .. "%)\n  STEP%s+NAME%s+STATUS", out)
      assert.matches("\n  gate%s+gate%s+paused", out)
      assert.matches("step gate awaits approval: chorus executions approve " .. esc(t) .. " gate %(or reject%)", out)
      local _, js = chorus("executions show --json " .. t)
      assert.equal(t, json.decode(js).trace_id)
      code, out = chorus("executions approve " .. t .. " gate")
      assert.equal(0, code)
      assert.matches("^approval of step gate of execution " .. esc(t) .. " requested; its status is now ", out)
      wait_status(t, "completed")
      local _, shown = chorus("executions show " .. t)
      assert.matches("output:\n{\n  \"done\": true\n}\n", shown, 1, true)
    end)

    it("reject fails the step with the reason", function()
      local t = execute("cli-gated")
      wait_status(t, "paused")
      local code, out, err = chorus("executions reject " .. t .. " gate --reason 'not tonight'")
      assert.equal(0, code, err)
      assert.matches("^rejection of step gate of execution ", out)
      wait_status(t, "failed")
      local _, rec = status_of(t)
      assert.matches("not tonight", json.encode(rec))
    end)

    it("pause, resume and cancel a running execution", function()
      local t = execute("cli-slow")
      wait_status(t, "running")
      local code, out, err = chorus("executions pause " .. t)
      assert.equal(0, code, err)
      assert.matches("^pause of execution " .. esc(t) .. " requested; its status is now ", out)
      wait_status(t, "paused")
      code, out = chorus("executions resume " .. t)
      assert.equal(0, code)
      assert.matches("^resume of execution ", out)
      wait_status(t, "completed")
      local t2 = execute("cli-slow")
      wait_status(t2, "running")
      code, out = chorus("executions cancel " .. t2 .. " --json")
      assert.equal(0, code)
      local res = json.decode(out)
      assert.equal(t2, res.trace_id)
      assert.equal("cancel", res.action)
      assert.is_string(res.status) -- the cancel is under way
      wait_status(t2, "cancelled")
    end)

    it("fails clearly: unknown trace, wrong state, not awaiting approval", function()
      local unknown = "00000000-0000-4000-8000-000000000000"
      local code, out, err = chorus("executions show " .. unknown)
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("chorus executions show: no execution " .. unknown .. " (HTTP 404)\n", err)
      code, _, err = chorus("executions cancel " .. unknown)
      assert.equal(1, code)
      assert.matches("no execution " .. esc(unknown), err)
      local t = execute("cli-failing")
      wait_status(t, "failed")
      code, _, err = chorus("executions resume " .. t)
      assert.equal(1, code)
      assert.matches("chorus executions resume: .*%(HTTP 409%)", err)
      code, _, err = chorus("executions approve " .. t .. " x")
      assert.equal(1, code)
      assert.matches("%(HTTP 409%)", err)
    end)
  end)

  describe("registry", function()
    it("lists the loaded scripts, and reloads them", function()
      local code, out = chorus("registry")
      assert.equal(0, code)
      assert.matches("^KIND%s+NAME%s+DECLARED%s+VERSION%s+FILE\n", out)
      assert.matches("\nstrategy%s+sequential%s+", out)
      assert.matches("\nagent%s+echo%s+", out)
      assert.matches("\naggregator%s+majority%s+", out)
      local _, js = chorus("registry list --json")
      local g1 = json.decode(js).generation
      code, out = chorus("registry reload")
      assert.equal(0, code)
      assert.matches("^reloaded: generation %d+, 0 load errors\n$", out)
      local _, js2 = chorus("registry --json")
      assert.is_true(json.decode(js2).generation > g1)
    end)
  end)

  describe("events", function()
    it("follows one execution to its end: its events, then its summary (exit 0)", function()
      local t = execute("cli-slow")
      local code, out, err = chorus("events " .. t)
      assert.equal(0, code, err)
      assert.matches("%d%d:%d%d:%d%d%.%d%d%dZ execution running\n", out)
      assert.matches("Z   a%s+completed", out)
      assert.matches("Z   b%s+completed", out)
      assert.matches("\n\ncli%-slow completed in [^\n]+%(trace " .. esc(t) .. "%)\n", out)
      -- Again once it ended: the history, then the summary.
      local code2, out2 = chorus("events " .. t)
      assert.equal(0, code2)
      assert.equal(out, out2)
    end)

    it("exits 1 when the execution fails; --json prints each message on a line", function()
      local t = execute("cli-failing")
      local code, out = chorus("events --json " .. t)
      assert.equal(1, code)
      local types = {}
      for line in out:gmatch("[^\n]+") do types[#types + 1] = assert(json.decode(line)).type end
      assert.equal("execution.status", types[1])
      assert.equal("result", types[#types])
    end)

    it("follows every execution until interrupted", function()
      local job = srv.spawn_chorus("events", env)
      sched.sleep(300)
      local t = execute("cli-slow")
      assert.is_true(h.wait_until(function()
        return srv.slurp(job.out):find(t:sub(1, 8) .. " execution completed", 1, true) ~= nil
      end, 10000), srv.slurp(job.out) .. srv.slurp(job.err))
      h.kill(job.pid, "INT")
      assert.equal(0, srv.wait_job(job))
      assert.matches("Z " .. t:sub(1, 8) .. "   a%s+running", srv.slurp(job.out))
    end)

    it("stops at once on Ctrl-C, while waiting for events and while waiting to reconnect", function()
      local t = execute("cli-gated")
      wait_status(t, "paused")
      local job = srv.spawn_chorus("events " .. t, env)
      assert.is_true(h.wait_until(function()
        return srv.slurp(job.out):find("awaiting approval", 1, true) ~= nil
      end, 10000), srv.slurp(job.out) .. srv.slurp(job.err))
      local t0 = sched.now()
      h.kill(job.pid, "INT")
      assert.equal(0, srv.wait_job(job, 5000))
      assert.is_true(sched.now() - t0 < 2000)
      chorus("executions reject " .. t .. " gate")
      -- A server that went away: it retries until stopped.
      local gone = srv.start("", { CHORUS_ADMIN_KEY = KEY })
      local job2 = srv.spawn_chorus("events", { CHORUS_SERVER = gone.base, CHORUS_API_KEY = KEY })
      sched.sleep(300)
      srv.stop(gone)
      assert.is_true(h.wait_until(function()
        return srv.slurp(job2.err):find("opening it again", 1, true) ~= nil
      end, 5000))
      sched.sleep(1500) -- into a wait between attempts
      t0 = sched.now()
      h.kill(job2.pid, "INT")
      assert.equal(0, srv.wait_job(job2, 5000))
      assert.is_true(sched.now() - t0 < 2000)
    end)

    it("fails clearly on an unknown execution", function()
      local code, _, err = chorus("events 00000000-0000-4000-8000-000000000000")
      assert.equal(1, code)
      assert.equal("chorus events: no execution 00000000-0000-4000-8000-000000000000 (HTTP 404)\n", err)
    end)

    it("serves the events as text/event-stream to plain HTTP clients (curl)", function()
      local t = execute("cli-failing")
      wait_status(t, "failed")
      local code, out = h.sh(("curl -sS -N --max-time 10 -H 'Accept: text/event-stream' -H 'Authorization: Bearer %s' "
        .. "%s/ws/executions/%s -D -"):format(KEY, s.base, t))
      assert.equal(0, code)
      assert.matches("^HTTP/1%.1 200[^\n]*\r\n", out)
      assert.matches("\r\ncontent%-type: text/event%-stream", out:lower())
      local msgs = {}
      for data in out:gmatch("\ndata: ([^\n]+)\n\n") do msgs[#msgs + 1] = json.decode(data) end
      assert.equal("execution.status", msgs[1].type)
      assert.equal("result", msgs[#msgs].type)
      assert.equal("failed", msgs[#msgs].execution.status)
      -- Neither an upgrade nor an event stream: told what it needs.
      local res = assert(client.request({ url = s.base .. "/ws/executions/" .. t,
        headers = { authorization = "Bearer " .. KEY } }))
      assert.equal(400, res.status)
      assert.matches("needs a WebSocket upgrade, or Accept: text/event%-stream", json.decode(res.body).error.message)
      res = assert(client.request({ url = s.base .. "/ws/execute/cli-slow",
        headers = { authorization = "Bearer " .. KEY, accept = "text/event-stream" } }))
      assert.equal(400, res.status)
      -- Counted in the HTTP metrics as the 200 it was.
      res = assert(client.request({ url = s.base .. "/metrics" }))
      assert.matches('chorus_http_requests_total{method="GET",route="/ws/executions/{trace_id}",status_class="2xx"} %d',
        res.body)
    end)
  end)

  describe("events across a server restart", function()
    it("the stream ends when the server stops, and chorus events follows the next one on the port", function()
      local a = srv.start("", { CHORUS_ADMIN_KEY = KEY })
      local e = { CHORUS_SERVER = a.base, CHORUS_API_KEY = KEY }
      local job = srv.spawn_chorus("events", e)
      finally(function()
        if h.alive(job.pid) then h.kill(job.pid, "KILL") end
      end)
      sched.sleep(300)
      local t0 = sched.now()
      srv.stop(a)
      -- Not held for the grace: event streams end at once, as WebSockets do.
      assert.is_true(sched.now() - t0 < 3000, "stop took " .. (sched.now() - t0) .. " ms")
      assert.is_true(h.wait_until(function()
        return srv.slurp(job.err):find("the stream broke", 1, true) ~= nil
      end, 5000), srv.slurp(job.err))
      local b = srv.start("", { CHORUS_ADMIN_KEY = KEY }, a.port)
      finally(function() srv.stop(b) end)
      assert.is_true(h.wait_until(function()
        return srv.slurp(job.err):find("following again", 1, true) ~= nil
      end, 10000), srv.slurp(job.err))
      local res = assert(client.request({ method = "POST", url = b.base .. "/api/v1/orchestrations/execute",
        headers = { authorization = "Bearer " .. KEY, ["content-type"] = "application/json" },
        body = json.encode({ config = FAILING }) }))
      assert.equal(202, res.status)
      local t = json.decode(res.body).trace_id
      assert.is_true(h.wait_until(function()
        return srv.slurp(job.out):find(t:sub(1, 8) .. " execution failed", 1, true) ~= nil
      end, 10000), srv.slurp(job.out))
      h.kill(job.pid, "INT")
      assert.equal(0, srv.wait_job(job))
    end)
  end)

  describe("fails clearly", function()
    it("on a bad key, no key, and a server that is not there", function()
      local code, out, err = chorus("executions list", { CHORUS_API_KEY = "chk_" .. ("00"):rep(32) })
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("chorus executions list: invalid API key (HTTP 401)\n  CHORUS_API_KEY is not a valid key of this server\n",
        err)
      code, _, err = chorus("configs list", { CHORUS_API_KEY = false })
      assert.equal(1, code)
      assert.matches("missing Authorization: Bearer <api key> %(HTTP 401%)\n  set CHORUS_API_KEY", err)
      code, _, err = chorus("events", { CHORUS_API_KEY = "nope" })
      assert.equal(1, code)
      assert.matches("chorus events: invalid API key %(HTTP 401%)", err)
      -- A port nothing listens on: reserved, then closed.
      local reservation, free = require("chorus.native").reserve_port("127.0.0.1", 0)
      reservation:close()
      local gone = "http://127.0.0.1:" .. tostring(free)
      for _, cmd in ipairs({ "executions list", "configs list", "registry", "events",
        "configs apply " .. file("x.json", { name = "x", strategy = "sequential", steps = {} }) }) do
        code, out, err = chorus(cmd, { CHORUS_SERVER = gone })
        assert.equal(1, code, cmd)
        assert.equal("", out)
        assert.matches("cannot reach the server at " .. esc(gone) .. ": connection refused", err)
      end
      code, _, err = chorus("executions list --server 'ftp://x'")
      assert.equal(2, code)
      assert.matches("ftp://x is not a server URL", err)
    end)

    it("never prints the API key", function()
      for _, cmd in ipairs({ "executions list", "configs list --json", "registry --json", "executions list --json" }) do
        local _, out, err = chorus(cmd)
        assert.is_nil((out .. err):find(KEY, 1, true), cmd)
      end
      local _, out, err = chorus("executions list", { CHORUS_API_KEY = "chk_" .. ("0f"):rep(32) })
      assert.is_nil((out .. err):find(("0f"):rep(32), 1, true))
    end)
  end)
end)
