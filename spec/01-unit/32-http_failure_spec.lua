-- chorus.http.failure and the request building of the llm and http
-- agents: Retry-After in both forms, retry classes, redaction, safe URLs,
-- messages from templates, URL encoding.
local failure = require "chorus.http.failure"
local chat = require "chorus.llm.chat"
local endpoint = require "chorus.llm.endpoint"
local http_call = require "chorus.http.call"
local json = require "chorus.json"

describe("chorus.http.failure", function()
  it("reads Retry-After as seconds, as an HTTP date in its three forms, and retry-after-ms", function()
    assert.equal(7000, failure.retry_after_ms({ ["retry-after"] = "7" }))
    assert.equal(250, failure.retry_after_ms({ ["retry-after-ms"] = "250", ["retry-after"] = "1" }))
    local now = failure.http_date("Wed, 21 Oct 2015 07:28:00 GMT")
    assert.equal(1445412480, now)
    assert.equal(now, failure.http_date("Wednesday, 21-Oct-15 07:28:00 GMT"))
    assert.equal(now, failure.http_date("Wed Oct 21 07:28:00 2015"))
    assert.equal(30000, failure.retry_after_ms({ ["retry-after"] = "Wed, 21 Oct 2015 07:28:30 GMT" }, now))
    assert.equal(0, failure.retry_after_ms({ ["retry-after"] = "Wed, 21 Oct 2015 07:27:00 GMT" }, now))
    assert.is_nil(failure.retry_after_ms({ ["retry-after"] = "soon" }))
    assert.is_nil(failure.retry_after_ms({}))
  end)

  it("retries 429 and 5xx (with the service's wait), never other statuses", function()
    local msg, info = failure.status("x", { status = 429, headers = { ["retry-after"] = "2" },
      body = '{"error":{"message":"slow down","type":"requests"}}' })
    assert.equal("x: HTTP 429: slow down", msg)
    assert.same({ retry_after_ms = 2000 }, info)
    msg, info = failure.status("x", { status = 503, headers = {}, body = "down" })
    assert.equal("x: HTTP 503: down", msg)
    assert.is_nil(info)
    msg, info = failure.status("x", { status = 400, headers = {}, body = '{"detail":"bad field"}' })
    assert.equal("x: HTTP 400: bad field", msg)
    assert.is_false(info.retry)
    assert.equal("ollama says", failure.provider_message('{"error":"ollama says"}'))
  end)

  it("classifies transport failures", function()
    assert.equal("timeout", failure.transport("x", "timeout", "timeout"))
    assert.equal("cancelled", failure.transport("x", "cancelled", "cancelled"))
    local msg, info = failure.transport("x", "tls error: boom", "tls error")
    assert.truthy(msg:find("https URL to a plain HTTP port", 1, true))
    assert.is_false(info.retry)
    msg, info = failure.transport("x", "connection refused: no", "connection refused")
    assert.equal("x: connection refused: no", msg)
    assert.is_nil(info)
  end)

  it("redacts secrets, as written and as JSON escapes them, in text and values", function()
    local s = "tok/en+with.dots"
    assert.equal("a [redacted] b [redacted]", failure.redact("a tok/en+with.dots b tok/en+with.dots", { s }))
    assert.equal('{"k":"[redacted]"}', failure.redact(json.encode({ k = s }), { s }))
    assert.same({ a = { "x [redacted]" }, ["[redacted]"] = 1 },
      failure.redact_value({ a = { "x " .. s }, [s] = 1 }, { s }))
    assert.equal("short", failure.redact("short", { "sh" })) -- too short to look for
  end)

  it("keeps user:password and the query out of URLs in messages", function()
    assert.equal("https://host/v1/x", failure.safe_url("https://user:pw@host/v1/x?key=abc#f"))
    assert.equal("first line second", failure.snippet("first line\nsecond"))
    assert.equal(203, #failure.snippet(string.rep("a", 500)))
  end)
end)

describe("llm request building", function()
  it("renders system and prompt from the input and asks for JSON in words when needed", function()
    local msgs = assert(chat.messages({ system = "You triage {{kind}} jobs.", prompt = "Job {{job.name}}: {{job.rc}}",
      response_format = "json" }, { kind = "batch", job = { name = "PAY", rc = 12 } }))
    assert.equal("You triage batch jobs.\n\n" .. chat.JSON_HINT, msgs[1].content)
    assert.equal("Job PAY: 12", msgs[2].content)
    msgs = assert(chat.messages({ prompt = "answer in JSON", response_format = "json" }, {}))
    assert.equal(1, #msgs)
    msgs = assert(chat.messages({ prompt = "hi", response_format = "json" }, {}))
    assert.same({ role = "system", content = chat.JSON_HINT }, msgs[1])
    local _, err = chat.messages({ prompt = "Job {{job_name}}" }, {})
    assert.equal("template params.prompt: no value for {{job_name}} in the step input", err)
  end)

  it("builds the body: options never override the main fields", function()
    local b = chat.body({ model = "m" }, { temperature = 0.2, max_tokens = 50, response_format = "json", stream = true,
      options = { seed = 7, model = "other", top_p = 0.5 } }, {})
    assert.equal("m", b.model)
    assert.equal(7, b.seed)
    assert.equal(0.5, b.top_p)
    assert.same({ type = "json_object" }, b.response_format)
    assert.same({ include_usage = true }, b.stream_options)
    assert.equal(50, b.max_tokens)
  end)

  it("resolves the endpoint from params, and names a missing key variable without a value", function()
    local ep = assert(endpoint.resolve({ base_url = "http://h:1/v1/", model = "m" }))
    assert.equal("http://h:1/v1", ep.base_url)
    local _, err = endpoint.resolve({ model = "m", api_key_env = "CHORUS_SPEC_SURELY_UNSET_VAR" })
    assert.equal("environment variable CHORUS_SPEC_SURELY_UNSET_VAR (params.api_key_env) is not set", err)
    local h = endpoint.set_auth({ key = "k1" }, { api_key_header = "api-key" }, {})
    assert.same({ ["api-key"] = "k1" }, h)
    h = endpoint.set_auth({ key = "k1" }, {}, {})
    assert.same({ authorization = "Bearer k1" }, h)
  end)
end)

describe("http request building", function()
  it("percent-encodes placeholders in the path and query, not before the path", function()
    local input = { base = "http://h:8080/api", name = "PAY ROLL/1", q = "a&b=c" }
    assert.equal("http://h:8080/api/jobs/PAY%20ROLL%2F1?q=a%26b%3Dc",
      assert(http_call.render_url("{{base}}/jobs/{{name}}?q={{q}}", input)))
    assert.equal("https://x/y/%C3%A9t%C3%A9", assert(http_call.render_url("https://x/y/{{v}}", { v = "été" })))
    local _, err = http_call.render_url("https://x/{{nope}}", {})
    assert.equal("template params.url: no value for {{nope}} in the step input", err)
  end)

  it("takes ${VAR} from the environment as secrets and names an unset one", function()
    local secrets = {}
    local hs = assert(http_call.render_headers({ Authorization = "Bearer ${HOME}", ["X-Job"] = "{{j}}" }, { j = "J1" }, secrets))
    assert.equal("Bearer " .. os.getenv("HOME"), hs.authorization)
    assert.equal("J1", hs["x-job"])
    assert.same({ os.getenv("HOME") }, secrets)
    local _, err = http_call.render_headers({ A = "${CHORUS_SPEC_SURELY_UNSET_VAR}" }, {}, {})
    assert.equal("params.headers.A names ${CHORUS_SPEC_SURELY_UNSET_VAR}, which is not set in the environment", err)
  end)

  it("matches expected statuses by number and class", function()
    assert.is_true(http_call.is_expected(204, { "2xx" }))
    assert.is_true(http_call.is_expected(404, { 200, 404 }))
    assert.is_false(http_call.is_expected(500, { "2xx", 404 }))
    assert.is_true(http_call.is_expected(201, nil))
  end)
end)
