-- The tws agent's parts that need no engine: base64, the job
-- view over the REST API's JobInPlan shape, job selection, text helpers,
-- the connection settings' errors, and check_step.
local base64 = require "chorus.base64"
local job = require "chorus.tws.job"
local client = require "chorus.tws.client"
local text = require "chorus.text"
local json = require "chorus.json"
local native = require "chorus.native"

local function env_of(t) return function(name) return t[name] end end

describe("tws parts", function()
  it("base64 round-trips and refuses bad input", function()
    for _, s in ipairs({ "", "f", "fo", "foo", "foob", "fooba", "foobar", "user:pässword\0\255" }) do
      assert.equal(s, base64.decode(base64.encode(s)))
    end
    assert.equal("Zm9vYmE=", base64.encode("fooba"))
    assert.is_nil(base64.decode("Zm9v!mE="))
    assert.is_nil(base64.decode("Zg=a"))
    assert.is_nil(base64.decode("abc"))
  end)

  it("views a JobInPlan, every key present", function()
    local v = job.view(json.decode([[{"id":"WS;JS1;J","name":"J",
      "jobStreamInPlan":{"id":"WS;JS1","name":"JS","startTime":"2026-01-01T02:00:00.000Z","workstationKey":{"name":"WS"}},
      "jobDefinition":{"jobDefinitionInPlanKey":{"workstationInPlanKey":{"name":"AGT"}}},
      "status":{"internalStatus":"ABEND"},"returnCode":null}]]))
    assert.equal("J", v.job_name)
    assert.equal("AGT", v.workstation)
    assert.equal("WS", v.job_stream_workstation)
    assert.equal("ABEND", v.internal_status)
    assert.equal("ERROR", v.status) -- mapped from the internal status when absent
    assert.equal(json.null, v.return_code)
    assert.equal(json.null, v.end_time)
    assert.equal("WS#JS.J", job.label(v))
    assert.equal("SUCCESSFUL", job.view({ status = { internalStatus = "SUCC" } }).status)
    assert.equal("HELD", job.view({ status = { commonStatus = "HELD", internalStatus = "HOLD" } }).status)
    assert.equal("READY", job.view({ status = "READY" }).status)
  end)

  it("picks exactly one job or says why", function()
    local a = { id = "1", name = "J", jobStreamInPlan = { name = "S1", workstationKey = { name = "W1" } } }
    local b = { id = "2", name = "J", jobStreamInPlan = { name = "S2", workstationKey = { name = "W2" } } }
    assert.equal(a, job.pick({ a }, { job = "J" }))
    local _, err = job.pick({}, { job = "J", workstation = "W9" })
    assert.equal("job J, workstation W9 not found in the current plan", err)
    _, err = job.pick({ a, b }, { job = "J" })
    assert.equal("job J matches 2 jobs in the plan (W1#S1.J, W2#S2.J): "
      .. "set params.job_stream or params.workstation to choose one", err)
  end)

  it("text helpers: tail on a line start, lines, UTF-8 repair", function()
    local s = "aaa\nbbb\nccc\n"
    assert.same({ "ccc\n", true }, { text.tail(s, 5) })
    assert.same({ s, false }, { text.tail(s, 100) })
    assert.same({ "a", "b", "" }, text.lines("a\r\nb\n\n"))
    local clean = text.utf8_clean("ok\255\254 é")
    assert.is_true(native.utf8_valid(clean))
    assert.equal("ok\239\191\189\239\191\189 é", clean)
  end)

  it("connection settings: every missing or bad one named, never the password", function()
    local ok = { TWS_URL = "https://e:31116/", TWS_USER = "u", TWS_PASSWORD = "pw-123456" }
    local c = assert(client.connect({}, { getenv = env_of(ok) }))
    assert.equal("https://e:31116", c.engine)
    assert.equal("https://e:31116/twsd/plan/current", c.plan_path)
    assert.equal("u [redacted]", c:scrub("u pw-123456"))
    c = assert(client.connect({ url = "https://e/twsd", plan = "p/1" }, { getenv = env_of(ok) }))
    assert.equal("https://e/twsd/plan/p%2F1", c.plan_path)
    local cases = {
      { {}, {}, "no engine URL: set TWS_URL (or params.url), e.g. https://engine:31116" },
      { { url_env = "MY_URL" }, {}, "no engine URL: set MY_URL (or params.url), e.g. https://engine:31116" },
      { {}, { TWS_URL = "ftp://e" }, "the engine URL from TWS_URL must start with https:// or http://" },
      { {}, { TWS_URL = "https://u:pw-123456@e" },
        "the engine URL from TWS_URL must not hold credentials: set TWS_USER and TWS_PASSWORD" },
      { {}, { TWS_URL = "https://e" }, "no user: set TWS_USER" },
      { { password_env = "P2" }, { TWS_URL = "https://e", TWS_USER = "u" }, "no password: set P2" },
      { { ca_file = "/nonexistent/ca.pem" }, ok,
        "the CA file from params.ca_file cannot be read: /nonexistent/ca.pem: No such file or directory" },
    }
    for _, case in ipairs(cases) do
      local conn, err, info = client.connect(case[1], { getenv = env_of(case[2]) })
      assert.is_nil(conn)
      assert.equal(case[3], err)
      assert.same({ retry = false }, info)
      assert.is_nil(err:find("pw-123456", 1, true))
    end
  end)

  it("check_step: approval, the action, templates, no password", function()
    local tws = dofile(native.home .. "/agents/tws.lua")
    local function check(params, extra, settings)
      local step = { id = "s", agent = "tws", params = params, dependencies = {} }
      for k, v in pairs(extra or {}) do step[k] = v end
      return tws.check_step(step, { steps_by_id = { s = step, other = { id = "other" } }, settings = settings or {} })
    end
    assert.same({}, check({ operation = "status", job = "{{job_name}}" }))
    assert.same({}, check({ operation = "action", action = "rerun" }, { approval = true }))
    assert.same({}, check({ operation = "action", action = "rerun" }, nil, { allow_unapproved_actions = true }))
    local errs = check({ operation = "action", action = "kill" })
    assert.equal("approval", errs[1].path)
    errs = check({ operation = "status", job = "{{dep_other.job}}", password = "x" })
    assert.equal("params.password", errs[1].path)
    assert.equal("params.job", errs[2].path)
    assert.matches("not a dependency", errs[2].message)
  end)
end)
