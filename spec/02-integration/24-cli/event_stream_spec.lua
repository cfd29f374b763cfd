-- The event endpoints as server-sent events, from outside: a long
-- history replays in full to a reader that keeps up, a reader that stops
-- reading is cut (its body incomplete) instead of buffered without bound,
-- and the server goes on serving.
local h = require "spec.helpers"
local srv = require "spec.support.serve"
local client = require "chorus.http.client"
local json = require "chorus.json"
local sched = require "chorus.sched"

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

describe("event streams (text/event-stream)", function()
  local s
  setup(function() s = srv.start("--no-auth --scripts " .. h.fixtures .. "/scripts") end)
  teardown(function() srv.stop(s) end)

  local function run(n, bytes)
    local doc = { config = h.flat("sequential", { { id = "s", agent = "streamer", params = { n = n, bytes = bytes } } }) }
    local res = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/execute",
      headers = { ["content-type"] = "application/json" }, body = json.encode(doc), timeout_ms = 10000 }))
    assert.equal(202, res.status)
    return json.decode(res.body).trace_id
  end

  it("replays a history larger than the slow-consumer bound, in full, to a reader that keeps up", function()
    -- 900 pieces of 2 KiB: about 2 MB, twice what a stream may have queued.
    local trace = run(900, 2048)
    assert.is_true(h.wait_until(function()
      local r = assert(client.request({ url = s.base .. "/api/v1/orchestrations/status/" .. trace }))
      return json.decode(r.body).status == "completed"
    end, 20000))
    local code, out = h.sh(("curl -sS -N --max-time 20 -H 'Accept: text/event-stream' %s/ws/executions/%s"):format(
      s.base, trace))
    assert.equal(0, code)
    local deltas, last = 0, nil
    for data in out:gmatch("data: ([^\n]*)\n\n") do
      last = json.decode(data)
      if last.type == "step.delta" then deltas = deltas + 1 end
      assert.not_equal("error", last.type)
    end
    assert.equal(900, deltas)
    assert.equal("result", last.type)
    assert.matches("^: chorus events\n\n", out)
  end)

  it("cuts a reader that stops reading, and goes on serving", function()
    -- The reader asks for every event, then reads nothing for 3 s while
    -- an execution streams ~16 MB: far more than the 1 MiB bound and the
    -- sockets' buffers.
    local dir = h.tmpdir()
    local req = "GET /ws/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    h.write(dir .. "/req", req)
    local out = dir .. "/out"
    assert(os.execute(("(bash -c %s >%s 2>&1; echo $? >%s.rc) >/dev/null 2>&1 &"):format(
      q(("exec 3<>/dev/tcp/127.0.0.1/%d && cat %s >&3 && sleep 3 && timeout 15 cat <&3"):format(s.port, dir .. "/req")),
      out, out)) == 0)
    sched.sleep(300)
    local trace = run(8000, 2048)
    assert.is_true(h.wait_until(function()
      return tonumber(srv.slurp(out .. ".rc"):match("%d+")) ~= nil
    end, 25000), "the stuck reader was never cut")
    -- cat ended on its own (the server closed the stream), not by timeout's 124.
    assert.equal(0, tonumber(srv.slurp(out .. ".rc"):match("%d+")))
    local got = srv.slurp(out)
    assert.matches("^HTTP/1%.1 200", got)
    assert.is_true(#got < 8000 * 2048, "it got everything: " .. #got)
    assert.is_nil(got:find("\r\n0\r\n\r\n", 1, true), "the body ended as if complete")
    assert.is_true(h.wait_until(function()
      local r = assert(client.request({ url = s.base .. "/api/v1/orchestrations/status/" .. trace }))
      return json.decode(r.body).status == "completed"
    end, 30000))
    assert.equal(200, assert(client.request({ url = s.base .. "/healthz" })).status)
  end)
end)
