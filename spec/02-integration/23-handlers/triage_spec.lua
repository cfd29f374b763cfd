-- examples/incident-triage.json from the command line, as scripts/demo
-- runs it: the stand-in model and engine started as programs, the sample
-- runbooks imported with `chorus kb import`, and `chorus run` in memory
-- with the knowledge base's own database (--kb-db). A failed job goes
-- through every step; a job that succeeded skips the log analysis and the
-- diagnosis (their `when`); a bad --kb-db is refused with exit 1.
-- #postgres
local h = require "spec.helpers"
local json = require "chorus.json"

local PASSWORD = "triage-Pa55-1"

-- start(name, cmd) -> pid, url: a stand-in started as a program, with the
-- URL it prints on its first line.
local function start(name, cmd)
  local out = h.tmpdir() .. "/" .. name .. ".out"
  local pid = h.spawn(cmd, out)
  local url
  assert(h.wait_until(function()
    local f = io.open(out)
    local s = f and f:read("*l") or ""
    if f then f:close() end
    url = s:match("(http://%S+)")
    return url ~= nil
  end, 10000), name .. " did not start")
  return pid, url
end

describe("examples/incident-triage.json, as the demo runs it #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  local pids, env, kb_url = {}, nil, nil

  setup(function()
    local llm_pid, llm_url = start("llm", ("%s lua %s/fakes/llm.lua --port 0"):format(h.binary, h.root))
    local tws_pid, tws_url = start("tws", ("env TWS_USER=demo TWS_PASSWORD=%s %s lua %s/fakes/tws.lua --port 0")
      :format(PASSWORD, h.binary, h.root))
    pids = { llm_pid, tws_pid }
    kb_url = h.fresh_db("triage")
    local code, _, err = h.sh(("%s kb import %s/examples/kb --db '%s'"):format(h.binary, h.root, kb_url))
    assert.equal(0, code, err)
    env = ("env -u DATABASE_URL -u CHORUS_KB_DB OPENAI_BASE_URL=%s CHORUS_LLM_MODEL=chorus-sim TWS_URL=%s "
      .. "TWS_USER=demo TWS_PASSWORD=%s"):format(llm_url, tws_url, PASSWORD)
  end)

  teardown(function()
    for _, pid in ipairs(pids) do h.kill(pid) end
  end)

  local function run(job, extra)
    return h.sh(("cd %s && %s %s run examples/incident-triage.json --input '{\"job_name\":\"%s\"}' %s")
      :format(h.root, env, h.binary, job, extra or ""))
  end

  it("finds the cause of a failed job and answers the operator, streaming the answer", function()
    local code, out, err = run("PAYROLL_DAILY", ("--kb-db '%s' --json"):format(kb_url))
    assert.equal(0, code, err)
    local rec = assert(json.decode(out))
    assert.equal("completed", rec.status)
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    for _, id in ipairs({ "status", "log", "runbooks", "diagnosis", "answer" }) do
      assert.equal("completed", by[id].status, id .. ": " .. tostring(by[id].error))
    end
    assert.equal("ABEND", by.status.output.internal_status)
    assert.matches("SQL0911N", by.log.output.summary, 1, true)
    assert.equal("sql0911n-deadlocks.md", by.runbooks.output.results[1].document)
    assert.matches("SQL0911N", by.diagnosis.output.causes[1].cause, 1, true)
    assert.matches("SQL0911N", rec.output.answer, 1, true)
    assert.is_true(rec.metrics.tokens > 0 and rec.metrics.cost > 0)
    -- the answer streamed to the terminal as it was written
    assert.matches("| What happened: job PAYROLL_JS.PAYROLL_DAILY", err, 1, true)
    assert.is_nil((out .. err):find(PASSWORD, 1, true))
  end)

  it("skips the log analysis and the diagnosis of a job that succeeded", function()
    local code, out, err = run("BACKUP_NIGHTLY", ("--kb-db '%s' --json -q"):format(kb_url))
    assert.equal(0, code, err)
    local rec = assert(json.decode(out))
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    assert.equal("SUCCESSFUL", by.status.output.status)
    assert.equal("skipped", by.log.status)
    assert.matches("condition false", by.log.reason, 1, true)
    assert.equal("skipped", by.diagnosis.status)
    assert.equal("completed", by.answer.status)
    assert.matches("BACKUP_NIGHTLY", rec.output.answer, 1, true)
  end)

  it("without a knowledge base the runbook step fails, saying why, and the rest goes on", function()
    local code, out, err = run("PAYROLL_DAILY", "--json -q")
    assert.equal(0, code, err)
    local rec = assert(json.decode(out))
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    assert.equal("failed", by.runbooks.status)
    assert.matches("no database", by.runbooks.error, 1, true)
    assert.equal("completed", rec.status) -- on_failure: continue
  end)

  it("refuses a --kb-db it cannot use, with exit 1 and the reason", function()
    local code, _, err = run("PAYROLL_DAILY", "--kb-db postgresql://postgres@127.0.0.1:1/none -q")
    assert.equal(1, code)
    assert.matches("cannot connect to the knowledge base's database", err, 1, true)
    local base = h.pg_url()
    local pg = require "chorus.db.pg"
    local name = "triage_empty_" .. require("chorus.native").random_hex(3)
    local admin = assert(pg.connect(base))
    assert(admin:query("CREATE DATABASE " .. pg.quote_ident(name)))
    admin:close()
    code, _, err = run("PAYROLL_DAILY", ("--kb-db '%s' -q"):format((base:gsub("/[^/]*$", "/" .. name))))
    assert.equal(1, code)
    assert.matches("has no kb tables: run `chorus migrate --db URL`", err, 1, true)
  end)
end)
