-- The plan's API contract, kept: a client written against the plan's
-- routes and fields (docs/api.md, "The plan's API") drives a real `chorus
-- serve` over loopback, in memory and with PostgreSQL, through the same
-- scenario. Both answers must have exactly the same shape — the same keys
-- and the same JSON types, recursively, empty arrays as [] — every time
-- must be an RFC 3339 string in UTC with milliseconds, and every response
-- and WebSocket message must match the server's own OpenAPI document.
-- #postgres
local h = require "spec.helpers"
local c = require "spec.support.clients"
local schema = require "spec.support.json_schema"
local client = require "chorus.http.client"
local http = require "chorus.http.server"
local json = require "chorus.json"

local ADMIN = "chk_" .. ("cd"):rep(32) -- memory mode: tenant "default", user "admin"
local BASE = "/api/v1/orchestrations"

local function serve(args, env)
  local log = os.tmpname()
  local pid = h.spawn(("env CHORUS_WEBHOOK_ALLOW=127.0.0.1 %s %s serve --listen 127.0.0.1:0 --scripts spec/fixtures/scripts %s")
    :format(env or "", h.binary, args or ""), log)
  local port
  assert(h.wait_until(function()
    port = tonumber((c.slurp(log) or ""):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. (c.slurp(log) or ""))
  return { port = port, pid = pid, log = log, base = "http://127.0.0.1:" .. port }
end

local function stop(s)
  h.kill(s.pid, "TERM")
  assert.is_true(h.wait_exit(s.pid, 20000), "serve did not exit")
end

-- req(s, method, path, body) -> status, decoded body (every answer is
-- checked against the server's OpenAPI document as it comes)
local function req(s, method, path, body, key)
  local hd = { ["content-type"] = "application/json", authorization = "Bearer " .. (key or s.key) }
  if type(body) == "table" then body = json.encode(body) end
  local res = assert(client.request({ method = method, url = s.base .. path, headers = hd, body = body,
    timeout_ms = 10000 }))
  local decoded = res.body ~= "" and json.decode(res.body) or nil
  if s.check then s.check(method, path, res.status, decoded, res.body) end
  return res.status, decoded
end

-- Shapes ---------------------------------------------------------------

local function kind(v)
  if v == json.null then return "null" end
  if type(v) == "table" then
    -- json.decode marks the empty arrays it reads: [] and {} differ here.
    if getmetatable(v) ~= nil or (next(v) ~= nil and json.is_array(v)) then return "array" end
    return "object"
  end
  return type(v)
end

-- differences(a, b, path, out): where a and b differ in keys or types
local function differences(a, b, path, out)
  local ka, kb = kind(a), kind(b)
  if ka ~= kb then
    out[#out + 1] = ("%s: %s in memory, %s with PostgreSQL"):format(path, ka, kb)
    return out
  end
  if ka == "array" then
    if #a ~= #b then
      out[#out + 1] = ("%s: %d items in memory, %d with PostgreSQL"):format(path, #a, #b)
    end
    for i = 1, math.min(#a, #b) do differences(a[i], b[i], ("%s[%d]"):format(path, i - 1), out) end
  elseif ka == "object" then
    for k, v in pairs(a) do
      if b[k] == nil then out[#out + 1] = ("%s.%s: only in memory"):format(path, k)
      else differences(v, b[k], path .. "." .. k, out) end
    end
    for k in pairs(b) do
      if a[k] == nil then out[#out + 1] = ("%s.%s: only with PostgreSQL"):format(path, k) end
    end
  end
  return out
end

-- Every time is an RFC 3339 string, UTC, milliseconds; never a number.
local RFC3339 = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
local function is_time_key(k)
  return type(k) == "string" and (k:match("_at$") or k == "at" or k == "since" or k == "until")
end
local function check_times(v, path, out)
  if type(v) ~= "table" then return out end
  for k, x in pairs(v) do
    local p = path .. "." .. tostring(k)
    if is_time_key(k) and x ~= json.null and not (type(x) == "string" and x:match(RFC3339)) then
      out[#out + 1] = ("%s = %s is not an RFC 3339 time with milliseconds"):format(p, tostring(x))
    end
    check_times(x, p, out)
  end
  return out
end

-- The plan's client ----------------------------------------------------

-- A config as the plan writes one: {steps: {steps, settings}}, is_global.
local function plan_config(name, steps, extra)
  local doc = { name = name, description = "the plan's " .. name, strategy = "sequential",
    steps = { steps = steps, settings = { parallel_limit = 2 } }, metadata = { team = "ops", tags = json.array() } }
  for k, v in pairs(extra or {}) do doc[k] = v end
  return doc
end

local TRIAGE = {
  { id = "status", name = "Collect Job Status", agent = "metered", timeout_ms = 5000,
    retry = { max_attempts = 2, backoff_ms = 10 }, dependencies = json.array(), output_key = "job_status",
    on_failure = "continue", params = { tokens = 7, cost = 0.002 } },
  { id = "answer", name = "Synthesize", agent = "echo", dependencies = { "status" }, output_key = "final_response",
    params = { output = { lines = json.array(), ok = true } } },
}
local GATED = {
  { id = "a", agent = "echo" },
  { id = "gate", agent = "echo", approval = true, dependencies = { "a" } },
}
local SLOW = { { id = "slow", agent = "delay", params = { ms = 1500, output = { done = true } } } }

local function wait_status(s, trace, want)
  local rec
  assert(h.wait_until(function()
    local _, r = req(s, "GET", BASE .. "/status/" .. trace)
    rec = r
    return r and r.status == want
  end, 10000), ("execution %s never became %s (last: %s)"):format(trace, want, rec and rec.status))
  return rec
end

-- scenario(s, hook) -> {name = answer}: what the plan's client does, in
-- order, answers kept for the shape comparison. Asserts the contract on
-- the way (values, not only shapes).
local function scenario(s, hook, received)
  local out = {}
  -- Configs: a global one (is_global, admin) and the tenant's own.
  local st, g = req(s, "POST", BASE .. "/configs", plan_config("shared-triage", TRIAGE, { is_global = true }))
  assert.equal(201, st)
  assert.is_true(g.is_global)
  assert.equal(json.null, g.tenant_id)
  assert.equal(2, g.steps_count)
  out.config_created = g
  st, out.config_gated = req(s, "POST", BASE .. "/configs", plan_config("gated", GATED))
  assert.equal(201, st)
  assert.is_false(out.config_gated.is_global)
  st = req(s, "POST", BASE .. "/configs", plan_config("slow", SLOW))
  assert.equal(201, st)
  local list
  st, list = req(s, "GET", BASE .. "/configs?strategy=sequential&limit=10&offset=0")
  assert.equal(200, st)
  assert.equal(3, list.total)
  for _, item in ipairs(list.items) do assert.is_number(item.steps_count) end
  out.config_list = list
  st, out.config_read = req(s, "GET", BASE .. "/configs/" .. g.id)
  assert.equal(200, st)
  assert.same({ team = "ops", tags = json.array() }, out.config_read.metadata)

  -- PATCH is_active: an inactive config is refused (409 invalid_state),
  -- listed as inactive, and runs again once active.
  st, out.config_inactive = req(s, "PATCH", BASE .. "/configs/" .. g.id, { is_active = false })
  assert.equal(200, st)
  assert.is_false(out.config_inactive.is_active)
  assert.equal(1, out.config_inactive.version)
  local err
  st, err = req(s, "POST", BASE .. "/execute/" .. g.id, { input = {} })
  assert.equal(409, st)
  assert.equal("invalid_state", err.error.code)
  assert.matches("not active", err.error.message)
  local inactive
  st, inactive = req(s, "GET", BASE .. "/configs?is_active=false")
  assert.equal(200, st)
  assert.equal(1, inactive.total)
  assert.equal("shared-triage", inactive.items[1].name)
  st, out.config_patched = req(s, "PATCH", BASE .. "/configs/" .. g.id, { is_active = true, description = "v2" })
  assert.equal(200, st)
  assert.equal(2, out.config_patched.version)
  st, out.config_version = req(s, "GET", BASE .. "/configs/" .. g.id .. "/versions/1")
  assert.equal(200, st)
  assert.equal("the plan's shared-triage", out.config_version.description)

  -- Execute as the plan's client does: session_id inside the input, a
  -- callback_url; then one with session_id and metadata at the top.
  local run
  st, run = req(s, "POST", BASE .. "/execute/" .. g.id, { input = { job_name = "PAYROLL", session_id = "chat-1",
    hosts = json.array() }, callback_url = hook })
  assert.equal(202, st)
  out.accepted = run
  local rec = wait_status(s, run.trace_id, "completed")
  assert.equal("chat-1", rec.session_id)
  assert.equal(g.id, rec.config_id)
  assert.equal(2, rec.config_version)
  assert.same(json.array(), rec.input.hosts) -- [] stays []
  assert.same({ lines = json.array(), ok = true }, rec.output.final_response or rec.steps[2].output)
  assert.equal(json.null, rec.paused_at)
  assert.is_true(h.wait_until(function() return #received >= 1 end, 10000), "the callback_url was not called")
  local delivered = json.decode(received[1].body)
  assert.equal(run.trace_id, delivered.trace_id)
  assert.equal("chat-1", delivered.session_id)
  assert.matches(RFC3339, delivered.finished_at)
  out.completed = rec
  local run2
  st, run2 = req(s, "POST", BASE .. "/execute/shared-triage", { input = {}, session_id = "chat-2",
    metadata = { ticket = "INC-42" } })
  assert.equal(202, st)
  out.completed_meta = wait_status(s, run2.trace_id, "completed")
  assert.same({ ticket = "INC-42" }, out.completed_meta.metadata)
  assert.equal("chat-2", out.completed_meta.session_id)

  -- paused_at: set while paused (awaiting approval), null once resumed.
  local gated
  st, gated = req(s, "POST", BASE .. "/execute/gated", { input = {} })
  assert.equal(202, st)
  out.paused = wait_status(s, gated.trace_id, "paused")
  assert.matches(RFC3339, out.paused.paused_at)
  st = req(s, "POST", BASE .. "/executions/" .. gated.trace_id .. "/steps/gate/approve", { reason = "ok" })
  assert.equal(200, st)
  out.approved = wait_status(s, gated.trace_id, "completed")
  assert.equal(json.null, out.approved.paused_at)
  -- a user's pause and resume
  local slow
  st, slow = req(s, "POST", BASE .. "/execute/slow", { input = {} })
  assert.equal(202, st)
  wait_status(s, slow.trace_id, "running")
  assert.equal(200, (req(s, "POST", BASE .. "/executions/" .. slow.trace_id .. "/pause")))
  local paused = wait_status(s, slow.trace_id, "paused")
  assert.matches(RFC3339, paused.paused_at)
  assert.equal(200, (req(s, "POST", BASE .. "/executions/" .. slow.trace_id .. "/resume")))
  local resumed = wait_status(s, slow.trace_id, "completed")
  assert.equal(json.null, resumed.paused_at)

  -- Lists: the plan's ?config_id=, ?session_id=, and the rest.
  st, out.by_config_id = req(s, "GET", BASE .. "/executions?config_id=" .. g.id)
  assert.equal(200, st)
  assert.equal(2, out.by_config_id.total)
  st, out.by_session = req(s, "GET", BASE .. "/executions?session_id=chat-1")
  assert.equal(200, st)
  assert.equal(1, out.by_session.total)
  assert.equal(run.trace_id, out.by_session.items[1].trace_id)
  st, out.all = req(s, "GET", BASE .. "/executions?limit=10")
  assert.equal(200, st)
  assert.equal(4, out.all.total)
  assert.equal(0, select(2, req(s, "GET", BASE .. "/executions?session_id=nobody")).total)
  assert.equal(0, select(2, req(s, "GET", BASE .. "/executions?config_id=" .. out.config_gated.id
    .. "&session_id=chat-1")).total)
  st, out.stats = req(s, "GET", "/api/v1/stats?window=600")
  assert.equal(200, st)
  -- Minutes are the clock's: which minute an execution fell in is not part of the shape.
  for _, m in ipairs(out.stats.per_minute) do m.by_status = {} end

  -- WebSocket at the plan's path, the key as ?token=.
  local ws = c.node_result(c.node_ws(s, BASE .. "/ws/execute/" .. g.id .. "?token=" .. s.key,
    { json.encode({ input = { job_name = "WS" }, session_id = "chat-ws" }) }, 0))
  assert.equal(1000, ws.code)
  out.events = {}
  for _, text in ipairs(ws.got) do
    local m = assert(json.decode(text))
    s.check_event(m)
    local k = m.type .. ":" .. tostring(m.step_id) .. ":" .. tostring(m.status)
    out.events[k] = out.events[k] or m
  end
  local last = json.decode(ws.got[#ws.got])
  assert.equal("result", last.type)
  assert.equal("completed", last.execution.status)
  assert.equal("chat-ws", last.execution.session_id)
  -- an inactive config over the WebSocket: the documented error
  assert.equal(200, (req(s, "PATCH", BASE .. "/configs/gated", { is_active = false })))
  local refused = c.node_result(c.node_ws(s, BASE .. "/ws/execute/gated?token=" .. s.key, { '{"input":{}}' }, 0))
  local e = json.decode(refused.got[1])
  assert.equal("error", e.type)
  assert.equal("invalid_state", e.error.code)
  assert.equal(1008, refused.code)
  return out
end

-- handshake(s, path) -> the server's answer to a WebSocket upgrade
local function handshake(s, path)
  return (c.raw(s, "GET " .. path .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
end

-- Failure paths every server answers the same way.
local function failures(s)
  local function bad(method, path, body, status, code, where)
    local st, e = req(s, method, path, body)
    assert.equal(status, st, method .. " " .. path)
    assert.equal(code, e.error.code, method .. " " .. path)
    if where then assert.equal(where, e.error.details[1].path, method .. " " .. path) end
  end
  bad("GET", BASE .. "/executions?config_id=shared-triage", nil, 400, "bad_request", "query.config_id")
  bad("GET", BASE .. "/executions?session_id=" .. ("x"):rep(201), nil, 400, "bad_request", "query.session_id")
  bad("GET", BASE .. "/executions?status=done", nil, 400, "bad_request", "query.status")
  bad("GET", BASE .. "/executions?since=yesterday", nil, 400, "bad_request", "query.since")
  bad("GET", BASE .. "/configs?is_active=maybe", nil, 400, "bad_request", "query.is_active")
  bad("GET", BASE .. "/configs?is_active=true&active=false", nil, 400, "bad_request", "query.is_active")
  bad("POST", BASE .. "/configs", plan_config("x1", TRIAGE, { is_global = "yes" }), 422, "validation_failed", "is_global")
  bad("POST", BASE .. "/configs", plan_config("x2", TRIAGE, { is_global = true, global = false }), 422,
    "validation_failed", "global")
  bad("PATCH", BASE .. "/configs/slow", { is_global = true }, 422, "validation_failed", "is_global")
  bad("POST", BASE .. "/execute/slow", { session_id = ("s"):rep(201) }, 422, "validation_failed", "session_id")
  bad("POST", BASE .. "/execute/slow", { metadata = { 1, 2 } }, 422, "validation_failed", "metadata")
  bad("POST", BASE .. "/execute/slow", { callback_url = "ftp://example.com/x" }, 422, "validation_failed", "callback_url")
  bad("POST", BASE .. "/execute/nope", {}, 404, "not_found")
  -- The WebSocket route refuses a bad or missing token before the upgrade.
  assert.matches("^HTTP/1%.1 401", handshake(s, BASE .. "/ws/execute/slow?token=chk_" .. ("0"):rep(64)))
  assert.matches("^HTTP/1%.1 401", handshake(s, BASE .. "/ws/execute/slow?token=nope"))
  assert.matches("^HTTP/1%.1 401", handshake(s, BASE .. "/ws/execute/slow"))
  -- a plain GET (no upgrade) at the plan's path is the WebSocket's answer, not the REST 404
  local st = client.request({ url = s.base .. BASE .. "/ws/execute/slow?token=" .. s.key, timeout_ms = 5000 }).status
  assert.equal(400, st)
end

describe("the plan's API contract", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG not set")
    return
  end
  local received, hooks = {}, nil
  local answers, doc = {}, nil
  local mem, pg

  setup(function()
    assert(c.setup(), "node with a global WebSocket is required")
    hooks = assert(http.listen({ port = 0 }, function(r)
      received[#received + 1] = r
      return 204
    end))
  end)
  teardown(function()
    for _, s in ipairs({ mem, pg }) do if s and h.alive(s.pid) then stop(s) end end
    hooks:close({ grace_ms = 100 })
    c.cleanup()
  end)

  -- with_checks(s): every answer and WebSocket message of s is checked
  -- against the OpenAPI document the server serves, and for its times.
  local function with_checks(s)
    local res = assert(client.request({ url = s.base .. "/api/v1/openapi.json", timeout_ms = 5000 }))
    doc = json.decode(res.body)
    local function matches(what, schema_, v, text)
      local ok, errs = schema.validate(doc, schema_, v)
      assert(ok, ("%s does not match its schema:\n  %s\nbody: %s"):format(what, table.concat(errs or {}, "\n  "),
        tostring(text):sub(1, 800)))
      local bad = check_times(v, "(root)", {})
      assert(#bad == 0, what .. ": " .. table.concat(bad, "; "))
    end
    s.check = function(method, path, status, v, text)
      local p = path:match("^[^?]*")
      local op
      for pattern, item in pairs(doc.paths) do
        local re = "^" .. pattern:gsub("%-", "%%-"):gsub("{[%w_]+}", "[^/]+") .. "$"
        if p:match(re) and item[method:lower()] and (not op or #pattern > #op.pattern) then
          op = { pattern = pattern, op = item[method:lower()] }
        end
      end
      assert(op, method .. " " .. p .. " is not documented")
      local r = op.op.responses[tostring(status)]
      assert(r, ("%s %s answered %d, not documented"):format(method, p, status))
      if r["$ref"] then r = schema.resolve(doc, r["$ref"]) end
      if r.content and v ~= nil then
        matches(("%s %s -> %d"):format(method, p, status), r.content["application/json"].schema, v, text)
      end
    end
    s.check_event = function(m)
      matches("WebSocket message " .. tostring(m.type), { ["$ref"] = "#/components/schemas/Event" }, m, json.encode(m))
    end
    return s
  end

  it("in memory: the plan's client runs unchanged", function()
    received = {}
    mem = with_checks(serve("", "CHORUS_ADMIN_KEY=" .. ADMIN))
    mem.key = ADMIN
    local hook = ("http://127.0.0.1:%d/hook"):format(hooks.port)
    answers.memory = scenario(mem, hook, received)
    failures(mem)
    stop(mem)
  end)

  it("with PostgreSQL: the plan's client runs unchanged", function()
    received = {}
    local url = h.fresh_db("contract")
    local code, out, err = h.sh(("%s keys create --db %s --tenant default --user admin --role admin"):format(h.binary, url))
    assert.equal(0, code, err)
    pg = with_checks(serve("--db " .. url))
    pg.key = out:match("(chk_%x+)%s*$")
    local hook = ("http://127.0.0.1:%d/hook"):format(hooks.port)
    answers.pg = scenario(pg, hook, received)
    failures(pg)
    -- Roles over the plan's routes (keys exist only with a database).
    local function key(role, tenant)
      local rc, o = h.sh(("%s keys create --db %s --tenant %s --user u-%s --role %s"):format(h.binary, url,
        tenant or "default", role, role))
      assert.equal(0, rc)
      return o:match("(chk_%x+)%s*$")
    end
    local op, viewer, other = key("operator"), key("viewer"), key("operator", "t2")
    local st, e = req(pg, "POST", BASE .. "/configs", plan_config("g2", TRIAGE, { is_global = true }), op)
    assert.equal(403, st)
    assert.matches("admin", e.error.message)
    assert.equal(201, (req(pg, "POST", BASE .. "/configs", plan_config("mine", TRIAGE, { is_global = false }), op)))
    -- the global config is every tenant's to read and run, its tenant config is not
    assert.equal(200, (req(pg, "GET", BASE .. "/configs/shared-triage", nil, other)))
    assert.equal(404, (req(pg, "GET", BASE .. "/configs/mine", nil, other)))
    assert.equal(202, (req(pg, "POST", BASE .. "/execute/shared-triage", { input = {} }, other)))
    assert.equal(403, (req(pg, "PATCH", BASE .. "/configs/shared-triage", { is_active = false }, other)))
    -- a viewer may not execute: 403 before the upgrade
    assert.matches("^HTTP/1%.1 403", handshake(pg, BASE .. "/ws/execute/shared-triage?token=" .. viewer))
    stop(pg)
  end)

  it("answers with exactly the same shapes from both stores", function()
    assert(answers.memory and answers.pg, "both scenarios must have run")
    local diffs = {}
    for name, a in pairs(answers.memory) do
      if name == "events" then
        for k, ev in pairs(a) do
          local other = answers.pg.events[k]
          if other == nil then diffs[#diffs + 1] = ("event %s: only in memory"):format(k)
          else differences(ev, other, "event " .. k, diffs) end
        end
        for k in pairs(answers.pg.events) do
          if a[k] == nil then diffs[#diffs + 1] = ("event %s: only with PostgreSQL"):format(k) end
        end
      else
        differences(a, answers.pg[name], name, diffs)
      end
    end
    assert(#diffs == 0, "the stores answer differently:\n  " .. table.concat(diffs, "\n  "))
    -- And the comparison can fail.
    assert.equal(3, #differences({ a = 1, b = json.array() }, { a = "1", b = {}, c = 1 }, "x", {}))
  end)
end)
