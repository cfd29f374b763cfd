-- The chorus binary as a user runs it: exit codes, --json, validate.
local h = require "spec.helpers"
local json = require "chorus.json"

local function chorus(args, env)
  return h.sh(("cd %s && %s%s %s"):format(h.root, env and ("env " .. env .. " ") or "", h.binary, args))
end

describe("chorus CLI", function()
  it("runs a config in memory and prints the record with --json, progress on stderr", function()
    local dir = h.tmpdir()
    h.write(dir .. "/cfg.json", json.encode({ name = "cli", strategy = "parallel", steps = {
      { id = "step_1", agent = "echo", output_key = "first" },
      { id = "step_2", agent = "flaky", dependencies = { "step_1" }, params = { fail_times = 1 },
        retry = { max_attempts = 2, backoff_ms = 1 } },
      { id = "step_3", agent = "echo", dependencies = { "step_1", "step_2" } },
    }, settings = { output_step = "step_3" } }))
    local code, out, err = chorus("run " .. dir .. "/cfg.json --input '{\"job_name\":\"PAYROLL_DAILY\"}' --json")
    assert.equal(0, code, err)
    local rec = assert(json.decode(out))
    assert.equal("completed", rec.status)
    assert.equal(3, #rec.steps)
    assert.equal("PAYROLL_DAILY", rec.output.job_name)
    for _, s in ipairs(rec.steps) do
      assert.equal("completed", s.status)
      assert.is_string(s.agent_version)
    end
    assert.equal(2, rec.steps[2].attempts) -- the flaky step retries once
    assert.is_number(rec.metrics.latency_ms)
    assert.matches("step_3", err) -- live progress on stderr
    assert.matches("completed", err)
  end)

  describe("GC pacing (CHORUS_GC_SOFT_MB)", function()
    -- The script holds ~40 MB, lets the pacer tick, and prints the pause
    -- in force (setpause returns the previous value; it is put back).
    local script
    setup(function()
      script = h.tmpdir() .. "/pause.lua"
      h.write(script, [[
        local sched = require "chorus.sched"
        local keep = {}
        for i = 1, 400000 do keep[i] = { i, tostring(i) } end
        sched.sleep(350)
        local p = collectgarbage("setpause", 200)
        collectgarbage("setpause", p)
        print(p, #keep)
      ]])
    end)

    it("lowers the pause once the heap passes the soft limit", function()
      local code, out, err = chorus("lua " .. script, "CHORUS_GC_SOFT_MB=1")
      assert.equal(0, code, err)
      local p = tonumber(out:match("^(%d+)"))
      assert.is_true(p >= 110 and p < 200, out)
    end)

    it("keeps LuaJIT's pause under the limit, and when turned off", function()
      for _, v in ipairs({ "CHORUS_GC_SOFT_MB=4096", "CHORUS_GC_SOFT_MB=0" }) do
        local code, out, err = chorus("lua " .. script, v)
        assert.equal(0, code, err)
        assert.equal(200, tonumber(out:match("^(%d+)")), v)
      end
    end)

    it("refuses a value that is not whole megabytes, saying which", function()
      for _, v in ipairs({ "abc", "-5", "1.5", "99999999999999999999" }) do
        local code, _, err = chorus("version", "CHORUS_GC_SOFT_MB=" .. v)
        assert.equal(2, code)
        assert.matches("CHORUS_GC_SOFT_MB must be a whole number of megabytes %(0 = off%), got '" .. v:gsub("%p", "%%%0") .. "'", err)
      end
    end)
  end)

  it("exits 1 when the execution fails", function()
    local dir = h.tmpdir()
    h.write(dir .. "/c.json", json.encode({ name = "f", strategy = "sequential", steps = { { id = "a", agent = "fail" } } }))
    local code, out = chorus("run " .. dir .. "/c.json --json -q")
    assert.equal(1, code)
    assert.equal("failed", json.decode(out).status)
  end)

  it("exits 2 with every validation error listed", function()
    local dir = h.tmpdir()
    h.write(dir .. "/bad.json", json.encode({ name = "b", strategy = "parallel", steps = {
      { id = "a", agent = "nope", dependencies = { "b" } },
      { id = "b", agent = "echo", dependencies = { "a" } },
      { id = "b", agent = "echo", on_failure = "explode" },
    } }))
    local code, _, err = chorus("run " .. dir .. "/bad.json")
    assert.equal(2, code)
    assert.matches("steps%[0%]%.agent", err)
    assert.matches("cycle", err)
    assert.matches("steps%[2%]", err)
    local vcode, _, verr = chorus("validate " .. dir .. "/bad.json")
    assert.equal(2, vcode)
    assert.equal(err:match("%d+ errors"), verr:match("%d+ errors"))
  end)

  it("exits 2 for unreadable files, bad JSON, bad input and bad options", function()
    local dir = h.tmpdir()
    h.write(dir .. "/broken.json", "{ not json")
    local code, _, err = chorus("run " .. dir .. "/missing.json")
    assert.equal(2, code)
    assert.matches("cannot read", err)
    code, _, err = chorus("run " .. dir .. "/broken.json")
    assert.equal(2, code)
    assert.matches("broken.json: invalid JSON", err)
    code, _, err = chorus("run examples/incident-triage.json --input '[1,2]'")
    assert.equal(2, code)
    assert.matches("must be a JSON object", err)
    code, _, err = chorus("run examples/incident-triage.json --input '{'")
    assert.equal(2, code)
    assert.matches("%-%-input", err)
    code, _, err = chorus("run examples/incident-triage.json --bogus")
    assert.equal(2, code)
    assert.matches("unknown option %-%-bogus", err)
    code = chorus("frobnicate")
    assert.equal(2, code)
  end)

  it("validate accepts the example", function()
    local code, out = chorus("validate examples/incident-triage.json")
    assert.equal(0, code)
    assert.matches("valid", out)
  end)

  it("approval steps: --auto-approve, and a prompt answered on stdin", function()
    local dir = h.tmpdir()
    h.write(dir .. "/a.json", json.encode({ name = "a", strategy = "sequential", steps = {
      { id = "gate", agent = "echo", approval = true, params = { output = "ok" } } } }))
    local code, out = chorus("run " .. dir .. "/a.json --auto-approve --json -q")
    assert.equal(0, code)
    assert.equal("ok", json.decode(out).output)
    code, out = h.sh(("cd %s && echo y | %s run %s/a.json --json -q"):format(h.root, h.binary, dir))
    assert.equal(0, code)
    assert.equal("ok", json.decode(out).output)
    code, out = h.sh(("cd %s && echo n | %s run %s/a.json --json -q"):format(h.root, h.binary, dir))
    assert.equal(1, code)
    assert.matches("rejected", json.decode(out).steps[1].error)
    code = h.sh(("cd %s && %s run %s/a.json -q < /dev/null"):format(h.root, h.binary, dir))
    assert.equal(1, code)
  end)

  it("prints the version", function()
    local code, out = chorus("version")
    assert.equal(0, code)
    assert.matches("^chorus %d+%.%d+%.%d+", out)
  end)
end)
