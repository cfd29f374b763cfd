-- The seven handlers of the plan (agents/*_handler.lua, log_analyzer,
-- synthesizer) for real: Lua over the llm, tws and kb agents, against the
-- shipped stand-ins over real HTTP (fakes/llm.lua, fakes/tws.lua) and a
-- knowledge base in the test PostgreSQL loaded from examples/kb. Their
-- output shapes, their prompts reaching the model, validation through the
-- agents they call (ctx:call / check_agent), and their failures.
-- #postgres
local h = require "spec.helpers"
local env = require "spec.support.env"
local json = require "chorus.json"
local pg = require "chorus.db.pg"
local native = require "chorus.native"
local sched = require "chorus.sched"
local resources = require "chorus.run.resources"
local validate = require "chorus.engine.validate"

local fake_llm = require "fakes.llm"
local fake_tws = dofile(native.home .. "/fakes/tws.lua")

local TWS_PASSWORD, LLM_KEY = "Tws-Pa55-handlers", "sk-handlers-0123456789"

describe("the plan's handlers #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  local llm, tws, pool, restore_env, engine
  local captured = {}

  setup(function()
    llm = assert(fake_llm.start({ port = 0, api_key = LLM_KEY }))
    tws = assert(fake_tws.start({ port = 0, user = "ops", password = TWS_PASSWORD, run_ms = 0 }))
    restore_env = env.set({ OPENAI_BASE_URL = llm.url, OPENAI_API_KEY = LLM_KEY, CHORUS_LLM_MODEL = "chorus-sim",
      TWS_URL = tws.url, TWS_USER = "ops", TWS_PASSWORD = TWS_PASSWORD, TWS_CA_FILE = false,
      CHORUS_EMBEDDING_MODEL = false })
    local url = h.fresh_db("handlers")
    pool = pg.pool(url, { size = 4 })
    assert(require("chorus.kb.import").run(pool, native.home .. "/examples/kb", {}))
    resources.set_kb_pg(pool)
    engine = h.engine()
  end)

  teardown(function()
    resources.set_kb_pg(nil)
    pool:close()
    restore_env()
    llm:close()
    tws:close()
  end)

  -- run(steps, input, settings) -> record, events, by-id steps
  local function run(steps, input, settings)
    local exec, events = h.run(h.flat("parallel", steps, settings), input or { job_name = "PAYROLL_DAILY" },
      { engine = engine, auto_approve = true })
    local rec = exec:record()
    captured[#captured + 1] = json.encode(rec)
    for _, e in ipairs(events) do captured[#captured + 1] = json.encode(e) end
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    return rec, events, by
  end

  local function one(agent, params, input, extra, settings)
    local s = { id = "s", agent = agent, params = params, retry = { max_attempts = 1 } }
    for k, v in pairs(extra or {}) do s[k] = v end
    local rec, events, by = run({ s }, input, settings)
    return by.s, rec, events
  end

  local function last_llm_request()
    return llm.requests[#llm.requests]
  end

  local function invalid(steps, settings)
    local cfg, errs = engine:validate(h.flat("parallel", steps, settings))
    assert.is_nil(cfg, "expected the config to be refused")
    return validate.format_errors(errs)
  end

  describe("status_handler", function()
    it("reads a job's status from the engine (tws status)", function()
      local s = one("status_handler", nil, { job_name = "PAYROLL_DAILY" })
      assert.equal("completed", s.status, s.error)
      assert.equal("PAYROLL_DAILY", s.output.job_name)
      assert.equal("ERROR", s.output.status)
      assert.equal("ABEND", s.output.internal_status)
      assert.equal(12, s.output.return_code)
      s = one("status_handler", { job = "{{job}}" }, { job = "BACKUP_NIGHTLY" })
      assert.equal("SUCCESSFUL", s.output.status)
    end)

    it("fails clearly when the job is not in the plan", function()
      local s = one("status_handler", nil, { job_name = "NO_SUCH_JOB" })
      assert.equal("failed", s.status)
      assert.matches("tws (step s)", s.error, 1, true)
      assert.matches("NO_SUCH_JOB", s.error, 1, true)
    end)

    it("is checked at validation through the tws agent's own checks", function()
      local msg = invalid({ { id = "s", agent = "status_handler", params = { tws = { bogus = 1 } } } })
      assert.matches("as the tws agent's params.bogus", msg, 1, true)
      msg = invalid({ { id = "a", agent = "echo" },
        { id = "s", agent = "status_handler", params = { job = "{{dep_a.name}}" } } })
      assert.matches("names step 'a', which is not a dependency of this step", msg, 1, true)
      msg = invalid({ { id = "s", agent = "status_handler", params = { tws = { password = "x" } } } })
      assert.matches("a password never goes in a config", msg, 1, true)
    end)
  end)

  describe("log_analyzer", function()
    it("reads the job log from the engine, then the model's findings as JSON", function()
      local n = #llm.requests
      local s = one("log_analyzer")
      assert.equal("completed", s.status, s.error)
      local o = s.output
      assert.equal("PAYROLL_DAILY", o.job.job_name)
      assert.is_string(o.summary)
      assert.matches("SQL0911N", o.summary, 1, true)
      local quoted = false
      for _, f in ipairs(o.findings) do
        assert.is_number(f.line)
        if f.text:find("SQL0911N", 1, true) then quoted = true end
      end
      assert.is_true(quoted, json.encode(o.findings))
      assert.is_false(o.log.truncated)
      assert.is_true(o.log.total_bytes > 0)
      assert.is_true(s.tokens > 0)
      -- the handler's prompt, with the log's lines numbered, asked for JSON
      assert.equal(n + 1, #llm.requests)
      local sent = last_llm_request().json
      assert.same({ type = "json_object" }, sent.response_format)
      assert.matches("job log", sent.messages[1].content, 1, true)
      assert.matches("Job PAYROLL_DAILY in job stream PAYROLL_JS", sent.messages[2].content, 1, true)
      assert.matches("\n%d+: [^\n]*SQL0911N", sent.messages[2].content)
    end)

    it("fails the attempt with the model's answer when it lacks the promised shape", function()
      local s = one("log_analyzer", { llm = { system = 'Answer as {"verdict": ""}' } })
      assert.equal("failed", s.status)
      assert.matches("^log_analyzer %(step s%): the model's JSON has no summary %(a string%): {\"verdict\"", s.error)
      assert.is_true(s.tokens > 0) -- the failed attempt's usage counts
    end)

    it("fails with the model's own error, not retried, for a 400", function()
      local s = one("log_analyzer", { llm = { model = "fake-400" } }, nil, { retry = { max_attempts = 3, backoff_ms = 1 } })
      assert.equal("failed", s.status)
      assert.equal(1, s.attempts)
      assert.matches("llm", s.error, 1, true)
    end)
  end)

  describe("rag_handler", function()
    it("searches the knowledge base with what the step knows about the job", function()
      local _, _, by = run({
        { id = "status", agent = "status_handler", output_key = "job_status" },
        { id = "kb", agent = "rag_handler", dependencies = { "status" }, params = { limit = 3 } },
      })
      local o = by.kb.output
      assert.equal("completed", by.kb.status, by.kb.error)
      assert.matches("PAYROLL_DAILY", o.query, 1, true)
      assert.matches("ABEND", o.query, 1, true)
      assert.matches("RC 12", o.query, 1, true)
      assert.is_true(o.count >= 1 and o.count <= 3)
      assert.equal("rc-12-batch-jobs.md", o.results[1].document)
    end)

    it("searches for the input's question, or params.query as a template", function()
      local s = one("rag_handler", nil, { question = "how do I release a held job" })
      assert.equal("completed", s.status, s.error)
      assert.equal("how do I release a held job", s.output.query)
      assert.equal("holds-and-releases.md", s.output.results[1].document)
      -- a question is data: braces in it are not a template
      s = one("rag_handler", nil, { question = "deadlock {{not_a_field}}" })
      assert.equal("completed", s.status, s.error)
      s = one("rag_handler", { query = "{{code}} deadlock" }, { code = "SQL0911N" })
      assert.equal("SQL0911N deadlock", s.output.query)
      assert.equal("sql0911n-deadlocks.md", s.output.results[1].document)
    end)

    it("says what is missing when there is nothing to search for", function()
      local s = one("rag_handler", nil, {})
      assert.equal("failed", s.status)
      assert.equal("rag_handler (step s): nothing to search for: set params.query, or give the input a question, "
        .. "message, query or job_name", s.error)
      assert.equal(1, s.attempts)
    end)

    it("says it needs a database when there is none", function()
      resources.set_kb_pg(nil)
      local s = one("rag_handler", nil, { question = "deadlock" })
      resources.set_kb_pg(pool)
      assert.equal("failed", s.status)
      assert.matches("kb (step s): no database", s.error, 1, true)
      assert.matches("--kb-db", s.error, 1, true)
    end)
  end)

  local TRIAGE = {
    { id = "status", agent = "status_handler", output_key = "job_status" },
    { id = "log", agent = "log_analyzer", dependencies = { "status" }, output_key = "log_findings",
      params = { job = "{{job_status.job_name}}", job_stream = "{{job_status.job_stream}}" } },
    { id = "kb", agent = "rag_handler", dependencies = { "status", "log" }, output_key = "runbooks",
      params = { limit = 3 } },
  }

  local function with(extra)
    local steps = {}
    for i, s in ipairs(TRIAGE) do steps[i] = s end
    for _, s in ipairs(extra) do steps[#steps + 1] = s end
    return steps
  end

  describe("troubleshoot_handler", function()
    it("ranks causes and recommendations from status, log findings and passages", function()
      local _, _, by = run(with({ { id = "t", agent = "troubleshoot_handler", dependencies = { "status", "log", "kb" } } }))
      local o = by.t.output
      assert.equal("completed", by.t.status, by.t.error)
      assert.is_string(o.summary)
      assert.is_true(#o.causes >= 1)
      assert.matches("SQL0911N", o.causes[1].cause, 1, true)
      assert.equal("high", o.causes[1].likelihood)
      assert.is_true(#o.recommendations >= 2)
      for i, r in ipairs(o.recommendations) do
        assert.equal(i, r.rank)
        assert.is_string(r.action)
      end
      assert.equal(3, #o.sources)
      assert.equal(1, o.sources[1].ref)
      -- the evidence reached the model as text: the job, the findings, numbered passages
      local user = last_llm_request().json.messages[2].content
      assert.matches("### job_status\njob PAYROLL_JS.PAYROLL_DAILY on PAYROLL_AGT: ERROR (ABEND), return code 12", user, 1, true)
      assert.matches("### log_findings\n", user, 1, true)
      assert.matches("\n[1] ", user, 1, true)
    end)

    it("fails the attempt when the model's JSON has no recommendations", function()
      local s = one("troubleshoot_handler", { llm = { system = 'Answer as {"summary": ""}' } }, { question = "why?" })
      assert.equal("failed", s.status)
      assert.matches("^troubleshoot_handler %(step s%): the model's JSON has no recommendations %(a list%): ", s.error)
    end)

    it("fails the attempt, quoting it, when the answer is not JSON", function()
      local s = one("troubleshoot_handler", { llm = { model = "fake-not-json" } }, { question = "why?" })
      assert.equal("failed", s.status)
      assert.matches("JSON", s.error, 1, true)
    end)
  end)

  describe("synthesizer", function()
    it("writes the operator's answer from the dependencies, streamed, citing the passages", function()
      local rec, events, by = run(with({ { id = "answer", agent = "synthesizer", dependencies = { "status", "log", "kb" } } }))
      assert.equal("completed", rec.status)
      local o = by.answer.output
      assert.matches("What happened: job PAYROLL_JS.PAYROLL_DAILY", o.answer, 1, true)
      assert.matches("SQL0911N", o.answer, 1, true)
      assert.matches("[1]", o.answer, 1, true)
      assert.equal(3, #o.sources)
      local deltas = {}
      for _, e in ipairs(events) do
        if e.type == "step.delta" and e.step_id == "answer" then deltas[#deltas + 1] = e.delta end
      end
      assert.is_true(#deltas >= 1)
      assert.equal(o.answer, table.concat(deltas))
      local sent = last_llm_request().json
      assert.is_true(sent.stream)
      assert.matches("Question: What happened to job PAYROLL_DAILY, why, and what should the operator do?",
        sent.messages[2].content, 1, true)
      assert.is_true(by.answer.tokens > 0 and by.answer.cost > 0)
    end)

    it("answers params.question, a template over the input", function()
      local s = one("synthesizer", { question = "Is {{job_name}} late?", llm = { stream = false } })
      assert.equal("completed", s.status, s.error)
      assert.matches("Question: Is PAYROLL_DAILY late?", last_llm_request().json.messages[2].content, 1, true)
      assert.is_nil(last_llm_request().json.stream)
    end)

    it("reports a template naming a missing field as a step error", function()
      local s = one("synthesizer", { question = "Is {{nothing.here}} late?" })
      assert.equal("failed", s.status)
      assert.equal("synthesizer (step s): template params.question: no value for {{nothing.here}} in the step input",
        s.error)
    end)
  end)

  describe("general_handler", function()
    it("answers the input's message, streamed", function()
      local s, _, events = one("general_handler", nil, { message = "what does RC 12 mean?" })
      assert.equal("completed", s.status, s.error)
      assert.matches("You asked: what does RC 12 mean?", s.output.response, 1, true)
      assert.equal("stop", s.output.finish_reason)
      local n = 0
      for _, e in ipairs(events) do if e.type == "step.delta" then n = n + 1 end end
      assert.is_true(n >= 1)
      local sent = last_llm_request().json
      assert.matches("IBM Workload Scheduler", sent.messages[1].content, 1, true)
      assert.equal("what does RC 12 mean?", sent.messages[2].content)
    end)

    it("is refused at validation when its prompt names a step that is not a dependency", function()
      local msg = invalid({ { id = "a", agent = "echo" },
        { id = "g", agent = "general_handler", params = { prompt = "{{dep_a.x}}" } } })
      assert.matches("as the llm agent's params.prompt: placeholder {{dep_a.x}} names step 'a'", msg, 1, true)
    end)
  end)

  describe("action_handler", function()
    it("is refused at validation without approval, saying how to allow it", function()
      local msg = invalid({ { id = "a", agent = "action_handler", params = { action = "hold" } } })
      assert.matches("approval: the action_handler runs a Workload Scheduler action (hold)", msg, 1, true)
      assert.matches("settings.allow_unapproved_actions: true", msg, 1, true)
      msg = invalid({ { id = "a", agent = "action_handler", approval = true, params = { action = "explode" } } })
      assert.matches("params.action", msg, 1, true)
    end)

    it("runs the input's action on the input's target once approved", function()
      local s = one("action_handler", nil, { action = "hold", target = "INVOICE_PRINT" }, { approval = true })
      assert.equal("completed", s.status, s.error)
      assert.equal("hold", s.output.action)
      assert.matches("INVOICE_PRINT", s.output.job, 1, true)
      assert.equal("step", s.output.approved_by)
      s = one("action_handler", nil, { action = "release", target = "INVOICE_PRINT" }, nil,
        { allow_unapproved_actions = true })
      assert.equal("completed", s.status, s.error)
      assert.equal("settings.allow_unapproved_actions", s.output.approved_by)
    end)

    it("reruns a job named by params", function()
      local s = one("action_handler", { action = "rerun", job = "{{job_name}}" }, { job_name = "PAYROLL_DAILY" },
        { approval = true })
      assert.equal("completed", s.status, s.error)
      assert.equal("rerun", s.output.action)
      assert.is_string(s.output.new_job_id)
    end)

    it("says what is missing: the action, the job, or a known action", function()
      local s = one("action_handler", nil, { target = "REPORT_MONTHLY" }, { approval = true })
      assert.equal("action_handler (step s): no action: set params.action or give the input an `action` "
        .. "(rerun, hold, release, cancel or kill)", s.error)
      s = one("action_handler", nil, { action = "hold" }, { approval = true })
      assert.matches("no job: set params.job", s.error, 1, true)
      s = one("action_handler", nil, { action = "explode", target = "REPORT_MONTHLY" }, { approval = true })
      assert.equal("failed", s.status)
      assert.matches("step s: the tws agent's params.action", s.error, 1, true)
      assert.equal(1, s.attempts)
    end)
  end)

  describe("ctx:call", function()
    it("shares the step's rate limit gate: settings.rate_limits.llm holds for handlers", function()
      local t0 = sched.now()
      local _, _, by = run({
        { id = "a", agent = "general_handler", params = { llm = { stream = false } } },
        { id = "b", agent = "general_handler", params = { llm = { stream = false } } },
        { id = "c", agent = "general_handler", params = { llm = { stream = false } } },
      }, { message = "hi" }, { rate_limits = { llm = { per_second = 10, burst = 1 } } })
      local waited = 0
      for _, id in ipairs({ "a", "b", "c" }) do
        assert.equal("completed", by[id].status, by[id].error)
        waited = waited + (by[id].rate_wait_ms or 0)
      end
      assert.is_true(waited >= 100, "waited " .. waited)
      assert.is_true(sched.now() - t0 >= 150)
    end)
  end)

  it("never records a secret: not the engine's password, not the model's key", function()
    for _, s in ipairs(captured) do
      assert.is_nil(s:find(TWS_PASSWORD, 1, true), s:sub(1, 200))
      assert.is_nil(s:find(LLM_KEY, 1, true), s:sub(1, 200))
    end
  end)
end)
