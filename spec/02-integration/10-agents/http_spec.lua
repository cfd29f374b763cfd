-- The http agent over real HTTP against a stand-in service (a Chorus
-- server in this process): templates for the URL, query, headers and body,
-- header values from the environment (kept out of records and errors),
-- expected statuses, extraction, limits, retries on 429/5xx with
-- Retry-After, the traceparent, and the "bad input" cases of issue 13.
local h = require "spec.helpers"
local server = require "chorus.http.server"
local json = require "chorus.json"
local sched = require "chorus.sched"

local srv, base
local seen = {}   -- requests the service received
local counts = {} -- per path, for "fail once" routes

-- A secret we can rely on in this process's environment: HOME's value
-- plays the token (specs cannot set variables in-process; the secrets
-- spec runs a server with real ones).
local SECRET = os.getenv("HOME")

local function handler(req)
  seen[#seen + 1] = req
  local p = req.path
  counts[p] = (counts[p] or 0) + 1
  if p:match("^/jobs/") then
    return 200, nil, { job = { name = p:sub(7), status = "ABEND", rc = 12 }, query = req.query,
      auth = req.headers.authorization }
  elseif p == "/tickets" and req.method == "POST" then
    local body = json.decode(req.body)
    return 201, nil, { id = "T-1", got = body, type = req.headers["content-type"] }
  elseif p == "/missing" then
    return 404, nil, { error = { message = "no ticket here for " .. tostring(req.headers.authorization) } }
  elseif p == "/flaky503" then
    if counts[p] == 1 then return 503, { ["retry-after-ms"] = "250" }, "busy" end
    return 200, nil, { ok = true }
  elseif p == "/limited" then
    return 429, { ["retry-after"] = "0" }, { error = { message = "too many requests" } }
  elseif p == "/text" then
    return 200, { ["content-type"] = "text/plain" }, "plain words"
  elseif p == "/notjson" then
    return 200, { ["content-type"] = "application/json" }, "{oops"
  elseif p == "/huge" then
    return 200, { ["content-type"] = "application/octet-stream" }, string.rep("x", 10 * 1024 * 1024)
  elseif p == "/slow" then
    sched.sleep(2000)
    return 200, nil, "late"
  end
  return 404, nil, "no route"
end

local function one(params, extra, input, settings)
  local step = { id = "call", agent = "http", params = params }
  for k, v in pairs(extra or {}) do step[k] = v end
  local exec, events = h.run(h.flat("sequential", { step }, settings), input or {})
  return exec:record(), events
end

local function failed_with(rec, text)
  assert.equal("failed", rec.status)
  local err = rec.steps[1].error
  assert.truthy(err and err:find(text, 1, true), err)
  assert.truthy(rec.error:find("step call failed: ", 1, true), rec.error)
  assert.falsy(err:find(SECRET, 1, true))
  return err
end

describe("http agent", function()
  setup(function()
    srv = assert(server.listen({ port = 0 }, handler))
    base = "http://127.0.0.1:" .. srv.port
  end)
  teardown(function() if srv then srv:close() end end)

  it("GETs a templated URL and query (encoded), with a header from the environment, and extracts", function()
    local rec = one({ url = base .. "/jobs/{{job_name}}", query = { stream = "{{js}}", n = 3 },
      headers = { Authorization = "Bearer ${HOME}", ["X-Job"] = "{{job_name}}" }, extract = "job" },
      nil, { job_name = "PAY ROLL/1", js = "A&B" })
    assert.equal("completed", rec.status)
    assert.same({ name = "PAY%20ROLL%2F1", status = "ABEND", rc = 12 }, rec.steps[1].output)
    local req = seen[#seen]
    assert.equal("GET", req.method)
    assert.equal("n=3&stream=A%26B", req.query)
    assert.equal("Bearer " .. SECRET, req.headers.authorization)
    assert.equal("PAY ROLL/1", req.headers["x-job"])
    local trace = rec.trace_id:gsub("-", "")
    assert.truthy(req.headers.traceparent:match("^00%-" .. trace .. "%-%x+%-01$"), req.headers.traceparent)
  end)

  it("POSTs a JSON body built from templates (values keep their types)", function()
    local rec = one({ url = base .. "/tickets", method = "post",
      body = { title = "Job {{job.name}} failed", rc = "{{job.rc}}", tags = { "tws", "{{job.name}}" } } },
      nil, { job = { name = "PAY", rc = 12 } })
    assert.equal("completed", rec.status)
    local out = rec.steps[1].output
    assert.equal(201, out.status)
    assert.equal("application/json", out.content_type)
    assert.same({ title = "Job PAY failed", rc = 12, tags = { "tws", "PAY" } }, out.body.got)
    assert.equal("application/json", out.body.type)
    assert.equal("POST", seen[#seen].method)
  end)

  it("treats expected statuses as success, and others as a step error with the service's message", function()
    local rec = one({ url = base .. "/missing", expected = { 200, 404 } })
    assert.equal("completed", rec.status)
    assert.equal(404, rec.steps[1].output.status)
    rec = one({ url = base .. "/missing", headers = { Authorization = "Bearer ${HOME}" } },
      { retry = { max_attempts = 3 } })
    local err = failed_with(rec, "http: GET " .. base .. "/missing: HTTP 404 (expected 2xx): no ticket here for Bearer [redacted]")
    assert.equal(1, rec.steps[1].attempts)
    assert.is_string(err)
  end)

  it("keeps a secret a service echoes out of the step's output", function()
    local rec = one({ url = base .. "/jobs/x", headers = { Authorization = "Bearer ${HOME}" } })
    assert.equal("completed", rec.status)
    assert.equal("Bearer [redacted]", rec.steps[1].output.body.auth)
    assert.falsy(json.encode(rec):find(SECRET, 1, true))
  end)

  it("retries a 503 after its Retry-After, and a 429 within max_attempts", function()
    local t0 = sched.now()
    local rec = one({ url = base .. "/flaky503" }, { retry = { max_attempts = 3 } })
    assert.equal("completed", rec.status)
    assert.equal(2, rec.steps[1].attempts)
    assert.is_true(sched.now() - t0 >= 240)
    rec = one({ url = base .. "/limited" }, { retry = { max_attempts = 2 } })
    failed_with(rec, "HTTP 429 (expected 2xx): too many requests")
    assert.equal(2, rec.steps[1].attempts)
  end)

  it("returns text as text, and JSON only when asked or said", function()
    local rec = one({ url = base .. "/text" })
    assert.equal("plain words", rec.steps[1].output.body)
    rec = one({ url = base .. "/jobs/a", response = "text" })
    assert.equal("string", type(rec.steps[1].output.body))
  end)

  describe("bad input: a clear step error naming the step and the cause", function()
    it("refuses at validation: unknown param, bad URL, headers, expected, a placeholder naming a non-dependency", function()
      local e = h.engine()
      local _, errs = e:validate(h.flat("sequential", { { id = "call", agent = "http",
        params = { url = base, extarct = "x" } } }))
      assert.equal("steps[0].params.extarct", errs[1].path)
      _, errs = e:validate(h.flat("sequential", {
        { id = "a", agent = "echo" },
        { id = "call", agent = "http", params = { url = "ftp://x/{{", headers = { ["Bad Name"] = "${1X}",
          ok = "{{dep_a.token}}" }, expected = { "9xx", 700 }, extract = "a..b" } } }))
      local got = {}
      for _, x in ipairs(errs) do got[#got + 1] = x.path .. ": " .. x.message end
      table.sort(got)
      assert.same({
        "steps[1].params.expected[0]: must be a status (100..599) or a class such as \"2xx\"",
        "steps[1].params.expected[1]: must be a status (100..599) or a class such as \"2xx\"",
        "steps[1].params.extract: unexpected \".\" at position 3 of path \"a..b\"",
        "steps[1].params.headers.Bad Name: ${1X} is not an environment variable name",
        "steps[1].params.headers.Bad Name: not a valid header name",
        "steps[1].params.headers.ok: placeholder {{dep_a.token}} names step 'a', which is not a dependency of this step",
      }, got)
      _, errs = e:validate(h.flat("sequential", { { id = "call", agent = "http", params = { url = "ftp://x" } } }))
      assert.equal("steps[0].params.url: bad url: scheme must be http or https, got 'ftp'",
        errs[1].path .. ": " .. errs[1].message)
    end)

    it("fails a template naming a missing field, before any request", function()
      local n = #seen
      local rec = one({ url = base .. "/jobs/{{job_name}}" }, { retry = { max_attempts = 3 } }, {})
      failed_with(rec, "http: template params.url: no value for {{job_name}} in the step input")
      assert.equal(1, rec.steps[1].attempts)
      assert.equal(n, #seen)
    end)

    it("fails a header naming an unset environment variable, by name only", function()
      local rec = one({ url = base .. "/jobs/x", headers = { Authorization = "Bearer ${CHORUS_SPEC_NO_SUCH_TOKEN}" } })
      failed_with(rec, "http: params.headers.Authorization names ${CHORUS_SPEC_NO_SUCH_TOKEN}, which is not set in the environment")
    end)

    it("fails a response that is not JSON when JSON is expected or extracted", function()
      local rec = one({ url = base .. "/notjson" })
      failed_with(rec, "HTTP 200: the response is not JSON (invalid JSON: ")
      rec = one({ url = base .. "/text", extract = "a" })
      failed_with(rec, "the response is not JSON")
      rec = one({ url = base .. "/jobs/x", extract = "job.owner.name" })
      failed_with(rec, "extract \"job.owner.name\": no value for {{job.owner.name}} in the response")
    end)

    it("fails an unreachable service and a TLS failure (https to a plain port)", function()
      local rec = one({ url = "http://127.0.0.1:1/x" }, { retry = { max_attempts = 2 } })
      failed_with(rec, "http: GET http://127.0.0.1:1/x: connection refused")
      assert.equal(2, rec.steps[1].attempts)
      rec = one({ url = ("https://127.0.0.1:%d/jobs/x"):format(srv.port) }, { retry = { max_attempts = 2 } })
      failed_with(rec, "tls error")
      assert.equal(1, rec.steps[1].attempts)
    end)

    it("fails a 10 MB response at max_response_bytes", function()
      local rec = one({ url = base .. "/huge" })
      failed_with(rec, "the response is larger than max_response_bytes (1048576)")
      -- and taken whole when both the agent and the execution allow it
      rec = one({ url = base .. "/huge", max_response_bytes = 20 * 1024 * 1024, response = "text" }, nil, nil,
        { max_output_bytes = 16 * 1048576 })
      assert.equal("completed", rec.status)
      assert.equal(10 * 1024 * 1024, #rec.steps[1].output.body)
    end)

    it("aborts the request at the step's timeout", function()
      local t0 = sched.now()
      local rec = one({ url = base .. "/slow" }, { timeout_ms = 150 })
      failed_with(rec, "timeout after 150 ms")
      assert.is_true(sched.now() - t0 < 1500)
    end)

    it("keeps user:password and the query out of messages", function()
      local rec = one({ url = "http://user:hunter22@127.0.0.1:1/x?token=abc123" })
      local err = failed_with(rec, "http: GET http://127.0.0.1:1/x: connection refused")
      assert.falsy(err:find("hunter22", 1, true))
      assert.falsy(err:find("abc123", 1, true))
    end)
  end)
end)
