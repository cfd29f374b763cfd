-- Secrets stay secret: a `chorus serve` node with PostgreSQL and Redis is
-- given an LLM key and a service token in its environment only, runs the
-- llm agent (whole, JSON, streamed) and the http agent against
-- fakes/llm.lua, including calls that fail because a wrong key is sent
-- and the service quotes it back. Then every record (REST status and
-- list), every event (the Redis stream of the execution), every log line
-- (debug level) and every database row is searched for the secrets.
-- #postgres #redis
local h = require "spec.helpers"
local c = require "spec.support.clients"
local fake_llm = require "fakes.llm"
local client = require "chorus.http.client"
local json = require "chorus.json"
local pg = require "chorus.db.pg"
local redis = require "chorus.db.redis"

local KEY = "sk-spec-" .. ("5ecret"):rep(6)
local TOKEN = "crm-tok-" .. ("7oken"):rep(6)
local WRONG = "sk-wrong-" .. ("0ther"):rep(6)
local SECRETS = { KEY, TOKEN, WRONG }

local function serve(args, env)
  local log = os.tmpname()
  local pid = h.spawn(("env %s %s serve --listen 127.0.0.1:0 %s"):format(env, h.binary, args), log)
  local port
  assert(h.wait_until(function()
    port = tonumber((c.slurp(log) or ""):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. (c.slurp(log) or ""))
  return { port = port, pid = pid, log = log, base = "http://127.0.0.1:" .. port }
end

local function call(s, method, path, body)
  local res = assert(client.request({ method = method, url = s.base .. path, timeout_ms = 10000,
    headers = { ["content-type"] = "application/json" }, body = body and json.encode(body) or nil }))
  return res.status, json.decode(res.body), res.body
end

local function leaks(text)
  local found = {}
  for _, s in ipairs(SECRETS) do
    if text:find(s, 1, true) then found[#found + 1] = s end
    -- and in part: a key cut in the middle is still a leak
    if text:find(s:sub(1, 20), 1, true) then found[#found + 1] = s:sub(1, 20) .. "..." end
  end
  return found
end

describe("secrets", function()
  if not h.pg_url() or not os.getenv("CHORUS_TEST_REDIS") then
    pending("CHORUS_TEST_PG / CHORUS_TEST_REDIS not set")
    return
  end
  local fake, node, db_url
  local redis_url = os.getenv("CHORUS_TEST_REDIS")

  setup(function()
    c.setup()
    fake = assert(fake_llm.start({ port = 0, api_key = KEY }))
    db_url = h.fresh_db("secrets")
    node = serve(("--db %s --redis %s --no-auth"):format(db_url, redis_url), table.concat({
      "CHORUS_LOG=debug", "OPENAI_BASE_URL=" .. fake.url, "OPENAI_API_KEY=" .. KEY,
      "CHORUS_LLM_MODEL=chorus-sim", "CRM_TOKEN=" .. TOKEN, "WRONG_KEY=" .. WRONG }, " "))
  end)
  teardown(function()
    if node and h.alive(node.pid) then
      h.kill(node.pid)
      h.wait_exit(node.pid, 20000)
    end
    if fake then fake:close() end
    c.cleanup()
  end)

  it("never appear in a record, an event, a log line or a database row", function()
    local config = { name = "secrets", strategy = "sequential", steps = {
      { id = "whole", agent = "llm", params = { system = "You analyse logs.", prompt = "{{log}}" } },
      { id = "json", agent = "llm", params = { prompt = "Findings as JSON for: {{log}}", response_format = "json" } },
      { id = "streamed", agent = "llm", params = { prompt = "{{log}}", stream = true } },
      { id = "wrong_key", agent = "llm", on_failure = "continue",
        params = { prompt = "x", api_key_env = "WRONG_KEY" } },
      { id = "crm", agent = "http", params = { url = fake.url .. "/models",
        headers = { Authorization = "Bearer ${OPENAI_API_KEY}", ["X-Crm"] = "${CRM_TOKEN}" }, extract = "data[0].id" } },
      { id = "crm_wrong", agent = "http", on_failure = "continue",
        params = { url = fake.url .. "/models", headers = { Authorization = "Bearer ${CRM_TOKEN}" } } },
    } }
    local st, r = call(node, "POST", "/api/v1/orchestrations/execute", { config = config,
      input = { log = "Job PAYROLL:\nEQQE036E JOB PAYROLL ENDED IN ERROR RC=12" } })
    assert.equal(202, st, json.encode(r))
    local trace = r.trace_id
    local status, rec, raw
    assert.is_true(h.wait_until(function()
      status, rec, raw = call(node, "GET", "/api/v1/orchestrations/status/" .. trace)
      return status == 200 and (rec.status == "completed" or rec.status == "failed")
    end, 20000), raw)
    assert.equal("completed", rec.status, raw)

    -- What ran is what we meant to check.
    local by_id = {}
    for _, s in ipairs(rec.steps) do by_id[s.id] = s end
    assert.truthy(by_id.whole.output.text:find("EQQE036E", 1, true))
    assert.is_table(by_id.json.output.findings)
    assert.truthy(by_id.streamed.output.text:find("EQQE036E", 1, true))
    assert.equal("failed", by_id.wrong_key.status)
    assert.truthy(by_id.wrong_key.error:find("HTTP 401: Incorrect API key provided: [redacted]", 1, true),
      by_id.wrong_key.error)
    assert.equal("chorus-sim", by_id.crm.output)
    assert.equal("failed", by_id.crm_wrong.status)
    assert.truthy(by_id.crm_wrong.error:find("Incorrect API key provided: [redacted]", 1, true), by_id.crm_wrong.error)
    -- the fake was sent the keys (so they were in play)
    local sent = {}
    for _, q in ipairs(fake.requests) do sent[#sent + 1] = q.headers.authorization or "" end
    assert.truthy(table.concat(sent, " "):find(WRONG, 1, true))

    local haystack = { raw }
    local _, _, list = call(node, "GET", "/api/v1/orchestrations/executions?limit=100")
    haystack[#haystack + 1] = list

    -- Every event of the execution, from its Redis stream.
    local rc = assert(redis.connect(redis_url))
    local events = assert(rc:call("XRANGE", "chorus:stream:" .. trace, "-", "+"))
    rc:close()
    local n_events, deltas = 0, 0
    for _, e in ipairs(events) do
      local fields = e[2]
      for i = 2, #fields, 2 do
        haystack[#haystack + 1] = fields[i]
        n_events = n_events + 1
        if fields[i]:find('"step.delta"', 1, true) then deltas = deltas + 1 end
      end
    end
    assert.is_true(n_events > 10, "events: " .. n_events)
    assert.is_true(deltas >= 1, "no step.delta event")

    -- Every row of every table.
    local conn = assert(pg.connect(db_url))
    local tables = assert(conn:query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    local rows = 0
    for _, t in ipairs(tables.rows) do
      local res = assert(conn:query(("SELECT row_to_json(t)::text AS j FROM %s t"):format(pg.quote_ident(t.tablename))))
      for _, row in ipairs(res.rows) do
        haystack[#haystack + 1] = row.j
        rows = rows + 1
      end
    end
    conn:close()
    assert.is_true(rows > 5, "rows: " .. rows)

    -- Every log line, at debug level: and they carry the trace ids.
    local log_text = c.slurp(node.log)
    haystack[#haystack + 1] = log_text
    assert.truthy(log_text:find("traceparent 00-" .. trace:gsub("-", ""), 1, true), log_text)

    local all = table.concat(haystack, "\n")
    assert.same({}, leaks(all))
  end)
end)
