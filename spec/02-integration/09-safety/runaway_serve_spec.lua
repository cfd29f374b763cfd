-- A script that never yields cannot freeze a server: the watchdog
-- interrupts it after its CPU budget, /healthz keeps answering, the step
-- fails with why, and SIGTERM still stops the process.
local h = require "spec.helpers"
local client = require "chorus.http.client"
local json = require "chorus.json"
local sched = require "chorus.sched"

describe("a runaway script under chorus serve", function()
  it("is interrupted; the server keeps answering and stops on SIGTERM", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/spin.lua", [[
      return { name = "spin", call = function() local n = 0 while true do n = n + 1 end end }]])
    local log = os.tmpname()
    local pid = h.spawn(("%s serve --listen 127.0.0.1:0 --no-auth --scripts %s"):format(h.binary, dir), log)
    local port
    assert(h.wait_until(function()
      port = tonumber(table.concat(h.read_lines(log), "\n"):match("listening on 127%.0%.0%.1:(%d+)"))
      return port ~= nil
    end, 10000), "serve did not start")
    local base = "http://127.0.0.1:" .. port
    local res = assert(client.request({ method = "POST", url = base .. "/api/v1/orchestrations/execute",
      headers = { ["content-type"] = "application/json" }, timeout_ms = 5000,
      body = json.encode({ config = h.flat("sequential", { { id = "s", agent = "spin", timeout_ms = 600000,
        retry = { max_attempts = 4 } } }) }) }))
    assert.equal(202, res.status)
    local trace = json.decode(res.body).trace_id
    -- While the agent spins, attempt after attempt, the server answers.
    local worst = 0
    for _ = 1, 20 do
      local t0 = sched.now()
      local hz = assert(client.request({ url = base .. "/healthz", timeout_ms = 2000 }))
      assert.equal(200, hz.status)
      worst = math.max(worst, sched.now() - t0)
      sched.sleep(20)
    end
    assert.is_true(worst < 600, "a /healthz took " .. worst .. " ms")
    local rec
    assert(h.wait_until(function()
      local r = assert(client.request({ url = base .. "/api/v1/orchestrations/status/" .. trace, timeout_ms = 2000 }))
      rec = json.decode(r.body)
      return rec.status == "failed"
    end, 10000), "the execution did not end")
    assert.equal(4, rec.steps[1].attempts)
    assert.matches("^cpu budget exceeded %(200 ms%)", rec.steps[1].error)
    -- and again, this time stopping the server while it spins
    assert(client.request({ method = "POST", url = base .. "/api/v1/orchestrations/execute",
      headers = { ["content-type"] = "application/json" }, timeout_ms = 5000,
      body = json.encode({ config = h.flat("sequential", { { id = "s", agent = "spin", timeout_ms = 600000,
        retry = { max_attempts = 100 } } }) }) }))
    sched.sleep(300)
    h.kill(pid, "TERM")
    assert.is_true(h.wait_exit(pid, 15000), "serve did not stop on SIGTERM")
  end)
end)
