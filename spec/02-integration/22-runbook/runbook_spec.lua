-- End to end from the command line: the stand-in engine started as a
-- program (build/chorus lua fakes/tws.lua --port 0), the sample runbooks
-- imported with `chorus kb import`, and examples/tws-runbook.json run with
-- `chorus run --db --auto-approve`: status, job log, runbook search, rerun.
-- #postgres
local h = require "spec.helpers"
local json = require "chorus.json"

describe("examples/tws-runbook.json #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  it("finds the cause, the runbook pages, and reruns the job once approved", function()
    local url = h.fresh_db("runbook")
    local dir = h.tmpdir()
    local out_file = dir .. "/fake.out"
    local pid = h.spawn(("env TWS_USER=demo TWS_PASSWORD=demo-pass-1 %s lua %s/fakes/tws.lua --port 0 --run-ms 0")
      :format(h.binary, h.root), out_file)
    finally(function() h.kill(pid) end)
    local engine_url
    assert.is_true(h.wait_until(function()
      local f = io.open(out_file)
      local s = f and f:read("*a") or ""
      if f then f:close() end
      engine_url = s:match("tws fake: (http://%S+)")
      return engine_url ~= nil
    end, 10000), "the fake did not start")

    local code, out, err = h.sh(("%s kb import %s/examples/kb --db '%s'"):format(h.binary, h.root, url))
    assert.equal(0, code, err)
    assert.matches("5 added", out)

    code, out, err = h.sh(("env TWS_URL=%s TWS_USER=demo TWS_PASSWORD=demo-pass-1 %s run %s/examples/tws-runbook.json "
      .. "--input '{\"job_name\":\"PAYROLL_DAILY\"}' --db '%s' --auto-approve --json"):format(engine_url, h.binary, h.root, url))
    assert.equal(0, code, err)
    local rec = assert(json.decode(out))
    assert.equal("completed", rec.status)
    local by = {}
    for _, s in ipairs(rec.steps) do by[s.id] = s end
    assert.equal("ABEND", by.status.output.internal_status)
    assert.matches("SQL0911N", by.log.output.text, 1, true)
    assert.equal("rc-12-batch-jobs.md", by.runbook.output.results[1].document)
    assert.equal("SUCC", rec.output.after.internal_status)
    assert.is_nil((out .. err):find("demo-pass-1", 1, true))
  end)
end)
