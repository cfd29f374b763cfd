-- The tws agent against fakes/tws.lua over real HTTP: status, job log and
-- the five actions, job selection, approval (validation and run time),
-- traceparent on every request, and every bad input: a clear step error
-- naming the step and the cause, retried only when retrying can help, and
-- never the password anywhere.
local h = require "spec.helpers"
local env = require "spec.support.env"
local json = require "chorus.json"
local log = require "chorus.log"
local native = require "chorus.native"
local sched = require "chorus.sched"
local base64 = require "chorus.base64"
local validate = require "chorus.engine.validate"

local fake_mod = dofile(native.home .. "/fakes/tws.lua")

local USER, PASSWORD = "ops_bot", "S3cr3t-Pa55word!"
local SECRETS = { PASSWORD, base64.encode(USER .. ":" .. PASSWORD) }

local fake, restore_env
local engine
local captured = {}   -- log lines, records and events of every run here

local function capture(s) captured[#captured + 1] = s end

local function step_cfg(params, extra, settings)
  local s = { id = "t1", agent = "tws", params = params, retry = { max_attempts = 1 } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return h.flat("sequential", { s }, settings)
end

-- run(doc, input, opts) -> exec, step record, events
local function run(doc, input, opts)
  opts = opts or {}
  local exec, events = h.run(doc, input or { job_name = "PAYROLL_DAILY" }, {
    engine = engine,
    during = opts.during or function(e)
      -- Approve each approval step as soon as it waits.
      sched.spawn_with({ detached = true }, function()
        while e.status ~= "completed" and e.status ~= "failed" and e.status ~= "cancelled" do
          for _, sr in ipairs(e:record().steps) do
            if sr.status == "paused" then e:approve(sr.id, "spec") end
          end
          sched.sleep(2)
        end
      end)
    end,
  })
  local rec = exec:record()
  capture(json.encode(rec))
  for _, ev in ipairs(events) do capture(json.encode(ev)) end
  local sr
  for _, s in ipairs(rec.steps) do if s.id == "t1" then sr = s end end
  return exec, sr, events
end

local function requests_since(n)
  local out = {}
  for i = n + 1, #fake.requests do out[#out + 1] = fake.requests[i] end
  return out
end

local function refute_secrets(s)
  for _, secret in ipairs(SECRETS) do
    assert.is_nil(s:find(secret, 1, true), "a secret leaked into: " .. s:sub(1, 300))
  end
end

describe("tws agent", function()
  local old_sink, old_level

  setup(function()
    fake = assert(fake_mod.start({ port = 0, user = USER, password = PASSWORD, run_ms = 0 }))
    restore_env = env.set({ TWS_URL = fake.url, TWS_USER = USER, TWS_PASSWORD = PASSWORD, TWS_CA_FILE = false })
    engine = h.engine()
    old_sink, old_level = log.sink, log.level
    log.sink = { write = function(_, s) capture(s) end }
    log.set_level("debug")
  end)

  teardown(function()
    log.sink, log.level = old_sink, old_level
    restore_env()
    fake:close()
  end)

  describe("status", function()
    it("reads the job's state from the current plan", function()
      local n = #fake.requests
      local exec, sr = run(step_cfg({ operation = "status" }))
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.equal("PAYROLL_DAILY", o.job_name)
      assert.equal("PAYROLL_JS", o.job_stream)
      assert.equal("MASTER_CPU", o.job_stream_workstation)
      assert.equal("PAYROLL_AGT", o.workstation)
      assert.equal("ERROR", o.status)
      assert.equal("ABEND", o.internal_status)
      assert.equal(12, o.return_code)
      assert.equal("MASTER_CPU;0AAAAAAAAAAAAB1C;PAYROLL_DAILY", o.job_id)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT02:00:04", o.start_time)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT02:04:02", o.end_time)
      assert.equal(fake.url, o.engine)
      -- The request the engine saw: the plan query with the filters and
      -- How-Many of the product's API, Basic auth and a traceparent.
      local reqs = requests_since(n)
      assert.equal(1, #reqs)
      assert.equal("POST", reqs[1].method)
      assert.equal("/twsd/plan/current/job/query", reqs[1].path)
      assert.same({ filters = { jobInPlanFilter = { jobName = "PAYROLL_DAILY", lastInRerunChain = true } } },
        json.decode(reqs[1].body))
      assert.equal("50", reqs[1].headers["how-many"])
      assert.equal("Basic " .. base64.encode(USER .. ":" .. PASSWORD), reqs[1].headers["authorization"])
      local trace = exec.trace_id:gsub("-", "")
      assert.matches("^00%-" .. trace .. "%-%x+%-01$", reqs[1].headers["traceparent"])
    end)

    it("takes the job, job stream and workstation from templates over the step input", function()
      local doc = h.flat("sequential", {
        { id = "pick", agent = "echo", params = { output = { name = "CLEANUP_TMP", ws = "DB_SERVER" } } },
        { id = "t1", agent = "tws", dependencies = { "pick" },
          params = { operation = "status", job = "{{dep_pick.name}}", workstation = "{{dep_pick.ws}}",
                     job_stream = "{{stream}}" } },
      })
      local exec, sr = run(doc, { stream = "HOUSEKEEPING_JS" })
      assert.equal("completed", exec.status, sr.error)
      assert.equal("CLEANUP_TMP", sr.output.job_name)
      assert.equal("DB_SERVER", sr.output.job_stream_workstation)
      assert.equal("WAITING", sr.output.status)
    end)

    it("refuses to guess between jobs of the same name", function()
      local exec, sr = run(step_cfg({ operation = "status", job = "CLEANUP_TMP" }))
      assert.equal("failed", exec.status)
      assert.matches("tws %(step t1%): job CLEANUP_TMP matches 2 jobs", sr.error)
      assert.matches("MASTER_CPU#HOUSEKEEPING_JS.CLEANUP_TMP", sr.error, 1, true)
      assert.matches("DB_SERVER#HOUSEKEEPING_JS.CLEANUP_TMP", sr.error, 1, true)
      assert.matches("params.job_stream or params.workstation", sr.error, 1, true)
    end)

    it("an unknown job fails at once, naming the job", function()
      local exec, sr = run(step_cfg({ operation = "status", job = "NOPE_JOB" }, { retry = { max_attempts = 3 } }))
      assert.equal("failed", exec.status)
      assert.equal("tws (step t1): job NOPE_JOB not found in the current plan", sr.error)
      assert.equal(1, sr.attempts)
    end)
  end)

  describe("log", function()
    it("returns the job log as text and lines", function()
      local exec, sr = run(step_cfg({ operation = "log" }))
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.equal("PAYROLL_DAILY", o.job.job_name)
      assert.equal("ABEND", o.job.internal_status)
      assert.matches("SQL0911N", o.text, 1, true)
      assert.matches("= Exit Status           : 12", o.text, 1, true)
      assert.is_false(o.truncated)
      assert.equal(o.total_bytes, o.returned_bytes)
      assert.equal(o.text, table.concat(o.lines, "\n") .. "\n")
      assert.equal(fake:run("PAYROLL_DAILY").log, o.text)
    end)

    it("keeps the log's tail within max_log_bytes, from a line start, and says so", function()
      local exec, sr = run(step_cfg({ operation = "log", max_log_bytes = 300 }))
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.is_true(o.truncated)
      assert.is_true(o.returned_bytes <= 300)
      assert.equal(#fake:run("PAYROLL_DAILY").log, o.total_bytes)
      -- whole lines: the first kept line is a line of the log
      assert.truthy(("\n" .. fake:run("PAYROLL_DAILY").log):find("\n" .. o.lines[1] .. "\n", 1, true))
      assert.matches("===\n$", o.text)
    end)

    it("reads a log served as text/plain too", function()
      fake:inject(function(req)
        if req.path:find("/joblog$") then
          return 200, { ["content-type"] = "text/plain" }, "line one\nline two\n"
        end
      end)
      local exec, sr = run(step_cfg({ operation = "log" }))
      fake:inject(nil)
      assert.equal("completed", exec.status, sr.error)
      assert.same({ "line one", "line two" }, sr.output.lines)
    end)

    it("a job that has not started has no log: a 404 with the engine's words, not retried", function()
      local exec, sr = run(step_cfg({ operation = "log", job = "INVOICE_PRINT" }, { retry = { max_attempts = 3 } }))
      assert.equal("failed", exec.status)
      assert.matches("^tws %(step t1%): GET plan/job/.*/joblog: HTTP 404: "
        .. "the job log of MASTER_CPU#BILLING_JS.INVOICE_PRINT not found", sr.error)
      assert.matches("has not started", sr.error, 1, true)
      assert.equal(1, sr.attempts)
    end)
  end)

  describe("actions", function()
    it("rerun: the engine starts a new run of the ABENDed job", function()
      local first = fake:run("PAYROLL_DAILY")
      assert.equal("ABEND", first.internal)
      local n = #fake.requests
      local exec, sr = run(step_cfg({ operation = "action", action = "rerun" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      local o = sr.output
      assert.equal("rerun", o.action)
      assert.equal("MASTER_CPU#PAYROLL_JS.PAYROLL_DAILY", o.job)
      assert.same({ status = "ERROR", internal_status = "ABEND", return_code = 12 }, o.before)
      assert.equal("SUCC", o.after.internal_status)
      assert.equal(0, o.after.return_code)
      assert.equal(1, o.after.rerun_number)
      assert.is_true(o.after.last_in_rerun_chain)
      assert.equal(first.id, o.job_id)
      assert.not_equal(first.id, o.new_job_id)
      assert.equal(o.new_job_id, fake:run("PAYROLL_DAILY").id)
      assert.equal("step", o.approved_by)
      -- query, PUT .../action/rerun with {}, query for the new run
      local reqs = requests_since(n)
      assert.equal("PUT", reqs[2].method)
      assert.equal("/twsd/plan/current/job/MASTER_CPU%3B0AAAAAAAAAAAAB1C%3BPAYROLL_DAILY/action/rerun", reqs[2].path)
      assert.equal("{}", reqs[2].body)
      for _, r in ipairs(reqs) do assert.matches("^00%-%x+%-%x+%-01$", r.headers["traceparent"]) end
    end)

    it("rerun: waits for a new run the engine adds a moment later, and says when it did not come", function()
      fake.rerun_delay_ms = 400
      local exec, sr = run(step_cfg({ operation = "action", action = "rerun", job = "BACKUP_NIGHTLY" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      assert.equal(1, sr.output.after.rerun_number)
      assert.not_equal(sr.output.job_id, sr.output.new_job_id)
      fake.rerun_delay_ms = 1500
      exec, sr = run(step_cfg({ operation = "action", action = "rerun", job = "BACKUP_NIGHTLY", rerun_wait_ms = 300 },
        { approval = true }))
      fake.rerun_delay_ms = 0
      assert.equal("completed", exec.status, sr.error)
      assert.equal(json.null, sr.output.new_job_id)
      assert.equal(sr.output.job_id, sr.output.after.job_id)
      assert.equal("rerun of DB_SERVER#BACKUP_JS.BACKUP_NIGHTLY accepted by the engine; "
        .. "its new run was not in the plan after 300 ms",
        sr.output.message)
      assert.is_true(h.wait_until(function() return fake:run("BACKUP_NIGHTLY").reruns == 2 end, 3000))
    end)

    it("hold, then release", function()
      local exec, sr = run(step_cfg({ operation = "action", action = "hold", job = "INVOICE_PRINT" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      assert.same({ status = "READY", internal_status = "READY", return_code = json.null }, sr.output.before)
      assert.equal("HELD", sr.output.after.status)
      assert.equal("HOLD", sr.output.after.internal_status)
      assert.equal(0, sr.output.after.priority)
      assert.equal("HELD", fake:run("INVOICE_PRINT").status)
      exec, sr = run(step_cfg({ operation = "action", action = "release", job = "INVOICE_PRINT" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      assert.equal("READY", sr.output.after.internal_status)
      assert.equal(10, sr.output.after.priority)
      assert.equal(json.null, sr.output.new_job_id)
    end)

    it("cancel a job that has not started", function()
      local exec, sr = run(step_cfg({ operation = "action", action = "cancel", job = "REPORT_MONTHLY" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      assert.equal("CANCELED", sr.output.after.status)
      assert.equal("CANCL", sr.output.after.internal_status)
      assert.equal("CANCL", fake:run("REPORT_MONTHLY").internal)
    end)

    it("kill a running job", function()
      local exec, sr = run(step_cfg({ operation = "action", action = "kill", job = "ETL_LOAD" }, { approval = true }))
      assert.equal("completed", exec.status, sr.error)
      assert.equal("EXEC", sr.output.before.internal_status)
      assert.equal("ABEND", sr.output.after.internal_status)
      assert.matches("JOB KILLED BY USER " .. USER, fake:run("ETL_LOAD").log, 1, true)
    end)

    it("an action the job's state forbids fails with the engine's message, not retried", function()
      local exec, sr = run(step_cfg({ operation = "action", action = "kill", job = "INVOICE_PRINT" },
        { approval = true, retry = { max_attempts = 3 } }))
      assert.equal("failed", exec.status)
      assert.equal("tws (step t1): PUT plan/job/MASTER_CPU;0AAAAAAAAAAAAB20;INVOICE_PRINT/action/kill: HTTP 400: "
        .. "The job MASTER_CPU#BILLING_JS.INVOICE_PRINT is not running: its status is READY.", sr.error)
      assert.equal(1, sr.attempts)
    end)
  end)

  describe("approval", function()
    it("validation refuses an action step without approval, with the path", function()
      local cfg, errs = engine:validate(step_cfg({ operation = "action", action = "rerun" }))
      assert.is_nil(cfg)
      assert.equal("steps[0].approval", errs[1].path)
      assert.matches("a tws action %(rerun%) changes the plan: set approval: true", errs[1].message)
      cfg, errs = engine:validate(step_cfg({ operation = "action" }, { approval = true }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.action", errs[1].path)
      cfg, errs = engine:validate(step_cfg({ operation = "status", action = "kill" }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.action", errs[1].path)
    end)

    it("settings.allow_unapproved_actions lets an action run without a person", function()
      local doc = step_cfg({ operation = "action", action = "hold", job = "CLEANUP_TMP", workstation = "MASTER_CPU" },
        nil, { allow_unapproved_actions = true })
      local exec, sr = run(doc, nil, { during = function() end })
      assert.equal("completed", exec.status, sr.error)
      assert.equal("settings.allow_unapproved_actions", sr.output.approved_by)
      assert.is_nil(sr.approval)
    end)

    it("the agent refuses again at run time, before sending anything", function()
      local cfg = assert(engine:validate(step_cfg({ operation = "action", action = "kill", job = "PAYROLL_DAILY" },
        { approval = true })))
      cfg.steps[1].approval = false -- changed behind validation's back
      local n = #fake.requests
      local exec = engine:execute(cfg, { job_name = "PAYROLL_DAILY" })
      exec:wait()
      local sr = exec:run_of("t1")
      assert.equal("failed", exec.status)
      assert.equal("tws (step t1): the kill action needs approval: set approval: true on the step, "
        .. "or settings.allow_unapproved_actions: true", sr.error)
      assert.equal(0, #requests_since(n))
    end)
  end)

  describe("bad input", function()
    it("an unknown operation: a validation error at create time, a step error at run time", function()
      local cfg, errs = engine:validate(step_cfg({ operation = "frobnicate" }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.operation", errs[1].path)
      cfg = assert(engine:validate(step_cfg({ operation = "status" })))
      cfg.steps[1].params.operation = "frobnicate"
      local exec = engine:execute(cfg, { job_name = "X" })
      exec:wait()
      assert.equal("tws (step t1): unknown operation 'frobnicate': use status, log or action", exec:run_of("t1").error)
    end)

    it("a template naming a missing field", function()
      local cfg, errs = engine:validate(step_cfg({ operation = "status", job = "{{dep_nope.name}}" }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.job", errs[1].path)
      assert.matches("names no step", errs[1].message)
      local exec, sr = run(step_cfg({ operation = "status", job = "{{jobname}}" }, { retry = { max_attempts = 3 } }))
      assert.equal("failed", exec.status)
      assert.equal("tws (step t1): template params.job: no value for {{jobname}} in the step input", sr.error)
      assert.equal(1, sr.attempts)
    end)

    it("a password in params is refused by validation without echoing it", function()
      local cfg, errs = engine:validate(step_cfg({ operation = "status", password = PASSWORD }))
      assert.is_nil(cfg)
      assert.equal("steps[0].params.password", errs[1].path)
      refute_secrets(validate.format_errors(errs))
    end)

    it("an unreachable engine: a retryable step error naming the engine", function()
      local exec, sr = run(step_cfg({ operation = "status", url = "http://127.0.0.1:1" },
        { retry = { max_attempts = 2 } }))
      assert.equal("failed", exec.status)
      assert.matches("^tws %(step t1%): POST plan/job/query: cannot reach the engine at http://127.0.0.1:1: "
        .. "connection refused", sr.error)
      assert.equal(2, sr.attempts)
    end)

    it("wrong credentials: 401, not retried, names the user and the variables, never the password", function()
      local restore = env.set({ TWS_PASSWORD = "wrong-" .. PASSWORD })
      local exec, sr = run(step_cfg({ operation = "status" }, { retry = { max_attempts = 3 } }))
      restore()
      assert.equal("failed", exec.status)
      assert.matches("HTTP 401: the engine at " .. fake.url
        .. " refused the credentials of user 'ops_bot' %(TWS_USER / TWS_PASSWORD%)", sr.error)
      assert.equal(1, sr.attempts)
      assert.is_nil(sr.error:find("wrong-", 1, true))
    end)

    it("missing settings say which variable to set", function()
      local restore = env.set({ TWS_USER = false })
      local _, sr = run(step_cfg({ operation = "status" }))
      restore()
      assert.equal("tws (step t1): no user: set TWS_USER", sr.error)
      restore = env.set({ TWS_URL = false })
      _, sr = run(step_cfg({ operation = "status" }))
      restore()
      assert.equal("tws (step t1): no engine URL: set TWS_URL (or params.url), e.g. https://engine:31116", sr.error)
      restore = env.set({ TWS_URL = "http://" .. USER .. ":" .. PASSWORD .. "@127.0.0.1:9" })
      local exec
      exec, sr = run(step_cfg({ operation = "status" }))
      restore()
      assert.equal("tws (step t1): the engine URL from TWS_URL must not hold credentials: "
        .. "set TWS_USER and TWS_PASSWORD", sr.error)
      assert.equal("failed", exec.status)
    end)

    it("a 10 MB answer fails the step with the limit, not retried", function()
      local big = string.rep("x", 10 * 1024 * 1024)
      fake:inject(function(req)
        if req.path:find("/joblog$") then return 200, { ["content-type"] = "text/plain" }, big end
      end)
      local exec, sr = run(step_cfg({ operation = "log" }, { retry = { max_attempts = 3 } }))
      fake:inject(nil)
      assert.equal("failed", exec.status)
      assert.matches("the engine's answer is larger than 4194304 bytes %(params.max_response_bytes%)", sr.error)
      assert.equal(1, sr.attempts)
    end)

    it("an answer that is not JSON", function()
      fake:inject(function(req)
        if req.path:find("/query$") then return 200, { ["content-type"] = "application/json" }, "<html>proxy error</html>" end
      end)
      local exec, sr = run(step_cfg({ operation = "status" }))
      fake:inject(nil)
      assert.equal("failed", exec.status)
      assert.matches("the engine answered HTTP 200 with a body that is not JSON .*<html>proxy error</html>", sr.error)
    end)

    it("503 with Retry-After: the step's retry waits as asked, then succeeds", function()
      local times, calls = {}, 0
      fake:inject(function(req)
        if req.path:find("/query$") then
          calls = calls + 1
          times[#times + 1] = sched.now()
          if calls == 1 then
            return 503, { ["content-type"] = "application/json", ["retry-after"] = "1" }, { messages = { "The engine is busy." } }
          end
        end
      end)
      local exec, sr, events = run(step_cfg({ operation = "status" }, { retry = { max_attempts = 3 } }))
      fake:inject(nil)
      assert.equal("completed", exec.status, sr.error)
      assert.equal(2, sr.attempts)
      assert.is_true(times[2] - times[1] >= 950, "waited " .. (times[2] - times[1]) .. " ms")
      local retried
      for _, e in ipairs(events) do
        if e.type == "step.retry" then retried = e end
      end
      assert.matches("HTTP 503 from the engine at .*: The engine is busy%.",
        retried.error or retried.message or json.encode(retried))
    end)

    it("429 and 500 are retried by the step's policy; 403 is not", function()
      for _, case in ipairs({ { 429, 3 }, { 500, 3 }, { 403, 1 } }) do
        fake:inject(function(req)
          if req.path:find("/query$") then return case[1], { ["content-type"] = "application/json" }, { messages = { "no" } } end
        end)
        local exec, sr = run(step_cfg({ operation = "status" }, { retry = { max_attempts = 3 } }))
        fake:inject(nil)
        assert.equal("failed", exec.status)
        assert.matches("HTTP " .. case[1], sr.error)
        assert.equal(case[2], sr.attempts, "HTTP " .. case[1])
      end
    end)

    it("a timeout of the step aborts the request", function()
      fake:inject(function(req)
        if req.path:find("/query$") then sched.sleep(2000) end
      end)
      local t0 = sched.now()
      local exec, sr = run(step_cfg({ operation = "status" }, { timeout_ms = 200 }))
      fake:inject(nil)
      assert.equal("failed", exec.status)
      assert.equal("timeout after 200 ms", sr.error)
      assert.is_true(sched.now() - t0 < 1500)
    end)
  end)

  it("never lets the password into a record, an event or a log line", function()
    assert.is_true(#captured > 20)
    for _, s in ipairs(captured) do refute_secrets(s) end
  end)
end)
