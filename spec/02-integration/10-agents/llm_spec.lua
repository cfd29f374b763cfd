-- The llm agent over real HTTP against fakes/llm.lua (the shipped
-- OpenAI-compatible stand-in): whole and streamed answers, templates,
-- JSON answers, tokens and cost, step.delta events, retries on 429/5xx
-- with Retry-After, the provider's own 4xx messages, and every "bad
-- input" of issue 13 as a clear step error naming the step and the cause.
local h = require "spec.helpers"
local fake_llm = require "fakes.llm"
local sched = require "chorus.sched"
local log = require "chorus.log"
local prices = require "chorus.llm.prices"
local native = require "chorus.native"

local fake

local LOG = "Job PAYROLL_DAILY log:\n"
  .. "10:00:01 step EXTRACT started\n"
  .. "10:00:09 EQQE036E JOB PAYROLL_DAILY ENDED IN ERROR RC=12\n"
  .. "10:00:09 SQL0911N The current transaction has been rolled back because of a deadlock\n"
  .. "10:00:10 step cleanup ok"

-- one(params, step_extra, input, run_opts) -> record, events, exec: a
-- config of one llm step "ask" run to its end.
local function one(params, extra, input, opts)
  local step = { id = "ask", agent = "llm", params = params }
  for k, v in pairs(extra or {}) do step[k] = v end
  local exec, events = h.run(h.flat("sequential", { step }), input or {}, opts)
  return exec:record(), events, exec
end

local function p(t)
  t.base_url = t.base_url or fake.url
  t.model = t.model or "chorus-sim"
  return t
end

-- Runs fn with every log line (debug and up) captured.
local function capture_log(fn)
  local lines, old, level = {}, log.sink, log.level
  log.sink = { write = function(_, s) lines[#lines + 1] = s end }
  log.set_level("debug")
  local ok, a, b, c = pcall(fn)
  log.sink, log.level = old, level
  assert(ok, a)
  return table.concat(lines), a, b, c
end

local function last_request()
  return fake.requests[#fake.requests]
end

describe("llm agent", function()
  setup(function()
    fake = assert(fake_llm.start({ port = 0, token_ms = 30 }))
    prices.use({ native.home })
  end)
  teardown(function() if fake then fake:close() end end)

  it("answers from templates over the step input, with tokens and cost from prices.json", function()
    local rec = one(p({ system = "You analyse {{kind}} job logs.", prompt = "{{log}}" }), nil,
      { kind = "TWS", log = LOG })
    assert.equal("completed", rec.status)
    local s = rec.steps[1]
    assert.truthy(s.output.text:find("Most likely cause: 10:00:09 EQQE036E JOB PAYROLL_DAILY ENDED IN ERROR RC=12 (line 3)", 1, true),
      s.output.text)
    assert.equal("stop", s.output.finish_reason)
    local sent = last_request().json
    assert.equal("You analyse TWS job logs.", sent.messages[1].content)
    assert.equal(LOG, sent.messages[2].content)
    assert.is_true(s.tokens > 0 and s.cost > 0)
    assert.equal(s.tokens, rec.metrics.tokens)
    assert.equal(s.cost, rec.metrics.cost)
  end)

  it("records the server's usage and prices it per million tokens (meta)", function()
    local ctx = setmetatable({}, { __index = { delta = function() end, usage = function() end,
      traceparent = function() return "00-" .. ("0"):rep(32) .. "-" .. ("1"):rep(16) .. "-01" end } })
    local out, meta = require("chorus.llm.chat").call({ log = LOG }, ctx, p({ prompt = "{{log}}" }))
    assert.truthy(out.text)
    local e = prices.lookup("chorus-sim")
    assert.equal("chorus-sim", meta.model)
    assert.equal(meta.prompt_tokens + meta.completion_tokens, meta.tokens)
    assert.equal((meta.prompt_tokens * e.input + meta.completion_tokens * e.output) / 1e6, meta.cost)
    assert.is_nil(meta.usage_estimated)
    assert.is_nil(meta.cost_note)
    assert.equal("stop", meta.finish_reason)
  end)

  it("sends a traceparent derived from the execution's trace id on every request", function()
    local rec = one(p({ prompt = "hello" }))
    local tp = last_request().headers.traceparent
    local trace = rec.trace_id:gsub("-", "")
    assert.truthy(tp and tp:match("^00%-" .. trace .. "%-%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%-01$"), tp)
    -- streamed too, and each attempt has its own parent id
    local n0 = #fake.requests
    rec = one(p({ prompt = "again", stream = true, model = "fake-500-once" }), { retry = { max_attempts = 2 } })
    assert.equal("completed", rec.status)
    local a, b = fake.requests[n0 + 1].headers.traceparent, fake.requests[n0 + 2].headers.traceparent
    assert.truthy(a:find(rec.trace_id:gsub("-", ""), 1, true))
    assert.truthy(b:find(rec.trace_id:gsub("-", ""), 1, true))
    assert.not_equal(a, b)
  end)

  it("parses a JSON answer into the step's output", function()
    local rec = one(p({ system = 'Answer as {"causes": [], "recommendations": [], "summary": ""}', prompt = "{{log}}",
      response_format = "json" }), nil, { log = LOG })
    assert.equal("completed", rec.status)
    local out = rec.steps[1].output
    assert.equal("high", out.causes[1].likelihood)
    assert.truthy(out.causes[1].cause:find("EQQE036E", 1, true))
    assert.equal(3, #out.recommendations)
    assert.same({ type = "json_object" }, last_request().json.response_format)
  end)

  it("streams: every delta goes out as step.delta, usage comes from the final chunk", function()
    -- what the agent reports while it streams (budgets read it)
    local methods = require("chorus.engine.step").agent_methods
    local report, reported = methods.usage, nil
    methods.usage = function(self, u)
      reported = u
      return report(self, u)
    end
    local rec, events, exec = one(p({ prompt = "{{log}}", stream = true, model = "fake-slow" }), nil, { log = LOG })
    methods.usage = report
    assert.equal("completed", rec.status)
    local deltas, text, ended = 0, {}, false
    for _, e in ipairs(events) do
      if e.type == "step.status" and e.step_id == "ask" and e.status == "completed" then ended = true end
      if e.type == "step.delta" then
        assert.is_false(ended, "a delta after the step's completed event")
        deltas = deltas + 1
        assert.equal("ask", e.step_id)
        assert.equal(1, e.attempt)
        assert.equal("llm", e.agent)
        text[#text + 1] = e.delta
      end
    end
    assert.is_true(deltas >= 10, "deltas: " .. deltas)
    assert.equal(rec.steps[1].output.text, table.concat(text))
    local sent = last_request().json
    assert.is_true(sent.stream)
    assert.same({ include_usage = true }, sent.stream_options)
    -- the server's usage, not an estimate
    local sr = exec:run_of("ask")
    assert.is_true(sr.tokens > 0)
    assert.equal(sr.tokens, reported.tokens)
    assert.is_nil(sr.live_usage) -- the step's own figure took over
  end)

  it("estimates usage, and says so, when a stream ends without a usage chunk", function()
    local meta
    local agent = require("chorus.llm.chat")
    local ctx = setmetatable({ step_id = "x", attempt = 1, trace_id = "t" }, { __index = {
      delta = function() end, usage = function() end,
      traceparent = function() return "00-" .. ("0"):rep(32) .. "-" .. ("1"):rep(16) .. "-01" end } })
    local out
    out, meta = agent.call({}, ctx, p({ prompt = "hello there", stream = true, model = "fake-no-usage" }))
    assert.truthy(out.text:find("You asked: hello there", 1, true))
    assert.is_true(meta.usage_estimated)
    assert.is_true(meta.tokens > 0)
    out, meta = agent.call({}, ctx, p({ prompt = "hello there", stream = true }))
    assert.truthy(out.text:find("You asked: hello there", 1, true))
    assert.is_nil(meta.usage_estimated)
  end)

  it("costs 0 with a note in meta for a model without a price", function()
    local agent = require("chorus.llm.chat")
    local ctx = setmetatable({}, { __index = { delta = function() end, usage = function() end,
      traceparent = function() return "00-" .. ("0"):rep(32) .. "-" .. ("1"):rep(16) .. "-01" end } })
    local out, meta = agent.call({}, ctx, p({ prompt = "hi", model = "some-local-model" }))
    assert.truthy(out)
    assert.equal(0, meta.cost)
    assert.truthy(meta.cost_note:find("no price for model 'some-local-model'", 1, true))
    assert.is_true(meta.tokens > 0)
  end)

  it("retries a 429 after the Retry-After the server asked for", function()
    local t0 = sched.now()
    local rec = one(p({ prompt = "rate me", model = "fake-429-once", headers = { ["x-fake-retry-after-ms"] = "300" } }),
      { retry = { max_attempts = 3, backoff_ms = 1 } })
    assert.equal("completed", rec.status)
    assert.equal(2, rec.steps[1].attempts)
    assert.is_true(sched.now() - t0 >= 290, "waited " .. (sched.now() - t0))
  end)

  it("retries a 500, and gives up after max_attempts with the server's message", function()
    local rec = one(p({ prompt = "x", model = "fake-500-once" }), { retry = { max_attempts = 2 } })
    assert.equal("completed", rec.status)
    assert.equal(2, rec.steps[1].attempts)
    rec = one(p({ prompt = "x", model = "fake-500" }), { retry = { max_attempts = 2 } })
    assert.equal("failed", rec.status)
    assert.equal(2, rec.steps[1].attempts)
    assert.truthy(rec.steps[1].error:find("HTTP 500: The server had an error", 1, true), rec.steps[1].error)
    assert.truthy(rec.error:find("step ask failed", 1, true))
  end)

  it("fails a 4xx at once with the provider's own message", function()
    local rec = one(p({ prompt = "x", model = "fake-400" }), { retry = { max_attempts = 5 } })
    assert.equal("failed", rec.status)
    assert.equal(1, rec.steps[1].attempts)
    assert.equal("llm: POST " .. fake.url .. "/chat/completions: HTTP 400: This model's maximum context length is "
      .. "8192 tokens. However, your messages resulted in 9120 tokens. Please reduce the length of the messages.",
      rec.steps[1].error)
    assert.truthy(rec.error:find("^step ask failed: "))
  end)

  it("aborts the transfer mid-stream at the step's timeout", function()
    local gone = fake.counts.client_gone or 0
    local t0 = sched.now()
    local rec = one(p({ prompt = "{{log}}", stream = true, model = "fake-slow" }), { timeout_ms = 200 }, { log = LOG })
    assert.equal("failed", rec.status)
    assert.equal("timeout after 200 ms", rec.steps[1].error)
    assert.is_true(sched.now() - t0 < 1000)
    -- the fake's next write found the connection closed
    assert.is_true(h.wait_until(function() return (fake.counts.client_gone or 0) == gone + 1 end, 3000))
  end)

  it("aborts the transfer mid-stream when the execution is cancelled", function()
    local gone = fake.counts.client_gone or 0
    local rec = one(p({ prompt = "{{log}}", stream = true, model = "fake-slow" }), nil, { log = LOG }, {
      during = function(exec)
        sched.spawn_with({ detached = true }, function()
          sched.sleep(150)
          exec:cancel()
        end)
      end })
    assert.equal("cancelled", rec.status)
    assert.is_true(h.wait_until(function() return (fake.counts.client_gone or 0) == gone + 1 end, 3000))
  end)

  describe("bad input: a clear step error naming the step and the cause", function()
    local function failed_with(rec, pattern)
      assert.equal("failed", rec.status)
      local err = rec.steps[1].error
      assert.truthy(err and err:find(pattern, 1, true), err)
      assert.truthy(rec.error:find("step ask failed: ", 1, true), rec.error)
      return err
    end

    it("refuses an unknown param at validation", function()
      local _, errs = h.engine():validate(h.flat("sequential", { { id = "ask", agent = "llm",
        params = { prompt = "x", temprature = 1 } } }))
      assert.equal("steps[0].params.temprature", errs[1].path)
      assert.truthy(errs[1].message:find("unknown field", 1, true))
    end)

    it("refuses at validation a placeholder naming a step that is not a dependency", function()
      local _, errs = h.engine():validate(h.flat("sequential", {
        { id = "a", agent = "echo" },
        { id = "ask", agent = "llm", params = { prompt = "status {{dep_a.status}}", system = "{{dep_zz}}" } } }))
      table.sort(errs, function(x, y) return x.path < y.path end)
      assert.equal("steps[1].params.prompt", errs[1].path)
      assert.equal("placeholder {{dep_a.status}} names step 'a', which is not a dependency of this step", errs[1].message)
      assert.equal("steps[1].params.system", errs[2].path)
      assert.equal("placeholder {{dep_zz}} names no step ('zz')", errs[2].message)
    end)

    it("fails a placeholder whose value is missing at run time, without calling the model", function()
      local n = #fake.requests
      local rec = one(p({ prompt = "Job {{job_name}}" }), { retry = { max_attempts = 3 } }, {})
      failed_with(rec, "llm: template params.prompt: no value for {{job_name}} in the step input")
      assert.equal(1, rec.steps[1].attempts)
      assert.equal(n, #fake.requests)
    end)

    it("fails a reply that is not JSON under response_format json, quoting its start", function()
      local rec = one(p({ prompt = "give json", model = "fake-not-json", response_format = "json" }))
      failed_with(rec, "the answer is not JSON (invalid JSON: ")
      assert.truthy(rec.steps[1].error:find(": Sure! Here is what I found: the job ended in error", 1, true))
      -- the attempt's tokens still count
      assert.is_true(rec.steps[1].tokens > 0)
    end)

    it("fails a 200 whose body is not JSON", function()
      local rec = one(p({ prompt = "x", model = "fake-garbage" }))
      failed_with(rec, "the server's answer is not JSON (HTTP 200, text/html): <html><head><title>502 Bad Gateway")
    end)

    it("fails an unreachable endpoint (and the retry policy retries it)", function()
      local rec = one(p({ prompt = "x", base_url = "http://127.0.0.1:1/v1" }), { retry = { max_attempts = 2 } })
      failed_with(rec, "llm: POST http://127.0.0.1:1/v1/chat/completions: connection refused")
      assert.equal(2, rec.steps[1].attempts)
    end)

    it("fails a TLS failure (https to a plain HTTP port) without retrying", function()
      local url = fake.url:gsub("^http:", "https:")
      local rec = one(p({ prompt = "x", base_url = url, stream = true }), { retry = { max_attempts = 3 } })
      failed_with(rec, "tls error")
      assert.truthy(rec.steps[1].error:find("https URL to a plain HTTP port", 1, true))
      assert.equal(1, rec.steps[1].attempts)
    end)

    it("fails a 10 MB answer at max_response_bytes, whole or streamed", function()
      local rec = one(p({ prompt = "x", model = "fake-huge" }))
      failed_with(rec, "the answer is larger than max_response_bytes (4194304)")
      rec = one(p({ prompt = "x", model = "fake-huge", stream = true }))
      failed_with(rec, "the answer is larger than max_response_bytes (4194304)")
      assert.equal(1, rec.steps[1].attempts)
    end)

    it("fails a stream cut mid-answer, and a whole answer cut mid-body", function()
      local rec = one(p({ prompt = "{{log}}", model = "fake-cut", stream = true }), nil, { log = LOG })
      failed_with(rec, "the stream was cut mid-answer (after ")
      rec = one(p({ prompt = "{{log}}", model = "fake-cut" }), nil, { log = LOG })
      failed_with(rec, "llm: POST " .. fake.url .. "/chat/completions: connection error")
    end)

    it("fails without a model, and names an unset key variable but no value", function()
      local logged, rec = capture_log(function()
        return one({ base_url = fake.url, prompt = "x", model = "m", api_key_env = "CHORUS_SPEC_NO_SUCH_KEY" })
      end)
      failed_with(rec, "llm: environment variable CHORUS_SPEC_NO_SUCH_KEY (params.api_key_env) is not set")
      assert.is_string(logged)
      if not os.getenv("CHORUS_LLM_MODEL") then
        rec = one({ base_url = fake.url, prompt = "x" })
        failed_with(rec, "llm: no model: set params.model on the step or CHORUS_LLM_MODEL in the environment")
      end
    end)

    it("logs a failed attempt with the step, the trace id and the traceparent", function()
      local logged, rec = capture_log(function() return one(p({ prompt = "x", model = "fake-400" })) end)
      assert.equal("failed", rec.status)
      local want = "(step ask attempt 1, trace " .. rec.trace_id .. ", traceparent 00-" .. rec.trace_id:gsub("-", "")
      assert.truthy(logged:find(want, 1, true), want .. " in:\n" .. logged)
    end)
  end)
end)
